"""``wyckoffdiff label`` and ``wyckoffdiff realize``: between structure files and protostructures."""

from __future__ import annotations

from pathlib import Path

import click

from ..exceptions import StructureFileError
from .base import main


def read_structure(path: Path):  # -> pymatgen.core.Structure
    """Read any format pymatgen knows (CIF, POSCAR, extxyz, ...), failing with the file's name and the cause."""
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            structure = Structure.from_file(path)
    except Exception as exception:  # noqa: BLE001 - every reader raises its own kinds
        raise StructureFileError(f'{path}: not a structure file pymatgen can read ({exception})') from None
    if len(structure) == 0:
        raise StructureFileError(f'{path}: the structure has no atoms')
    return structure


@main.command()
@click.argument('files', nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option('--symprec', default=0.1, show_default=True, help='Symmetry tolerance in Å for spglib.')
def label(files: tuple[Path, ...], symprec: float) -> None:
    """Print the canonical protostructure label of each structure FILE (CIF, POSCAR, ...)."""
    from ..symmetry import Protostructure

    for path in files:
        protostructure = Protostructure.from_structure(read_structure(path), symprec=symprec)
        click.echo(f'{protostructure.label}\t{path}' if len(files) > 1 else protostructure.label)


@main.command()
@click.argument('protostructure_label', metavar='LABEL')
@click.option('--attempts', default=100, show_default=True, type=click.IntRange(min=1), help='Candidates drawn at most.')
@click.option('--seed', type=int, default=None, help='Random seed; the same seed gives the same structure.')
@click.option('--min-distance', default=0.5, show_default=True, help='Reject candidates with atoms closer than this (Å).')
@click.option('--method', type=click.Choice(['template', 'pyxtal']), default='template', show_default=True,
              help='template: the geometry of the most similar training crystal of the same prototype, with the volume '
                   'predicted for the new elements (PyXtal where no training crystal has the prototype); pyxtal: a '
                   'random PyXtal draw.')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), help='Write the structure here (CIF by default; format from the suffix).')
def realize(protostructure_label: str, attempts: int, seed: int | None, min_distance: float, method: str,
            output: Path | None) -> None:
    """Realize a protostructure LABEL as a 3D structure whose symmetry is the requested one."""
    from ..realize import realize as realize_protostructure
    from ..symmetry import Protostructure
    from ..templates import shipped_templates

    protostructure = Protostructure.from_label(protostructure_label)
    templates = shipped_templates().templates_for(protostructure, 1) if method == 'template' else []
    result = realize_protostructure(protostructure, attempts=attempts, seed=seed, min_distance=min_distance,
                                    template=templates[0] if templates else None, scale_volume=method == 'template')
    if not result.ok:
        raise click.ClickException(result.reason or 'realization failed')
    how = f'from {result.template} (train split)' if result.template else f'by PyXtal in {result.attempts} attempt(s)'
    click.echo(f'realized {result.protostructure.label} {how}', err=True)
    structure = result.structure
    if output is None:
        click.echo(structure.to(fmt='cif'))
    else:
        structure.to(filename=str(output), **({'fmt': 'cif'} if output.suffix.lower() in ('', '.cif') else {}))
        click.echo(f'wrote {output}', err=True)
