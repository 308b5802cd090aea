"""``wyckoffdiff data``: build the cached protostructure dataset from the shared Materials Project files."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import DATA_DIR_VARIABLE
from .base import main


@main.group()
def data() -> None:
    """The Materials Project protostructure dataset."""


@data.command()
@click.option('--data-dir', type=click.Path(file_okay=False, path_type=Path), envvar=DATA_DIR_VARIABLE, help=f'Folder with mp_structures.csv.gz [env: {DATA_DIR_VARIABLE}; default: ../shared/data].')
@click.option('--include-extra', is_flag=True, help='Also read mp_structures_extra.csv.gz (rows without energies are dropped).')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), help='Where to write the table (default: a cache file keyed by the input data).')
@click.option('--processes', type=click.IntRange(min=1), help='Worker processes (default: all cores).')
@click.option('--limit', type=click.IntRange(min=1), help='Read only the first N rows of each file.')
def build(data_dir: Path | None, include_extra: bool, output: Path | None, processes: int | None, limit: int | None) -> None:
    """Detect the protostructure of every structure and write the dataset with its train/val/test split."""
    from ..data import build_dataset

    report = build_dataset(data_dir, include_extra=include_extra, output=output, processes=processes, limit=limit)
    click.echo(report.summary())


@data.command()
@click.option('--data-dir', type=click.Path(file_okay=False, path_type=Path), envvar=DATA_DIR_VARIABLE, help=f'Folder with mp_structures.csv.gz [env: {DATA_DIR_VARIABLE}; default: ../shared/data].')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), required=True,
              help='Where to write the library (the package ships aiida_wyckoffdiff/resources/templates.jsonl.gz).')
def templates(data_dir: Path | None, output: Path) -> None:
    """Write the library of template crystals: every training-split crystal, for realization from real geometry."""
    from ..data import build_dataset, default_dataset_path, find_data_dir, load_dataset
    from ..templates import build_template_library

    data_dir = find_data_dir(data_dir)
    dataset = default_dataset_path(data_dir)
    if not dataset.is_file():
        build_dataset(data_dir, output=dataset)
    library = build_template_library(data_dir, load_dataset(dataset), output)
    click.echo(f'wrote {len(library)} templates of {len(library.by_prototype)} prototypes to {output}')


@data.command('lattice-shapes')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), required=True,
              help='Where to write the shapes (the package ships aiida_wyckoffdiff/resources/lattice_shapes.json.gz).')
def lattice_shapes(output: Path) -> None:
    """Write the lattice shapes of the shipped template library's crystals, per space group, for PyXtal's draws."""
    from ..lattices import build_lattice_shapes
    from ..templates import shipped_templates

    shapes = build_lattice_shapes(shipped_templates(), output)
    count = sum(map(len, shapes.by_spacegroup.values()))
    click.echo(f'wrote {count} lattice shapes of {len(shapes.by_spacegroup)} space groups to {output}')
