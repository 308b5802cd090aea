"""``wyckoffdiff dft-setup`` and ``wyckoffdiff export``: the DFT follow-up with our work chain or with any code."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .base import main

EXPORT_FORMATS = {'cif': 'cif', 'poscar': 'vasp', 'extxyz': 'extxyz'}
"""Format name on the command line -> ASE's name for it, which is also the file suffix."""
ENTRIES_FORMAT = 'entries'
"""``--format entries``: one ``entries.json`` of pymatgen ``ComputedStructureEntry`` objects instead of files."""


def _load_profile(profile_name: str | None):  # -> aiida.manage.configuration.Profile
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError

    try:
        return load_profile(profile_name, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exception:
        raise click.ClickException(f'no AiiDA profile ({exception}): create one with `verdi presto`') from None


@main.command('dft-setup')
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option(
    '--family', 'family_label', default='wyckoffdiff/pbesol', show_default=True, help='Pseudopotential family label.'
)
@click.option(
    '--elements',
    default='Li,O',
    show_default=True,
    help='Elements to take from the Debian pseudopotentials when no UPF files are given.',
)
@click.option('--functional', default='pbesol', show_default=True, help='Functional of the Debian pseudopotentials.')
@click.option('--ecutwfc', default=40.0, show_default=True, help='Recommended wave-function cutoff (Ry).')
@click.option('--ecutrho', default=320.0, show_default=True, help='Recommended charge-density cutoff (Ry).')
@click.option(
    '--pw',
    'pw_path',
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='pw.x to use (default: the one on PATH).',
)
@click.option('--computer', 'computer_label', default='localhost', show_default=True)
@click.argument('upf_files', nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def dft_setup(
    profile_name: str | None,
    family_label: str,
    elements: str,
    functional: str,
    ecutwfc: float,
    ecutrho: float,
    pw_path: Path | None,
    computer_label: str,
    upf_files: tuple[Path, ...],
) -> None:
    """Create, if missing, the pw.x Code and a pseudopotential family of UPF_FILES with cutoffs (safe to run again).

    Without UPF_FILES the family takes one file per element from /usr/share/espresso/pseudo (Debian's
    quantum-espresso-data). Run again with other cutoffs, it updates them.
    """
    from ..codes import get_or_create_localhost, get_or_create_pw_code
    from ..dft import debian_pseudopotentials, get_or_create_pseudo_family
    from ..workchains.dft_hull import require_dft_extra

    require_dft_extra()
    profile = _load_profile(profile_name)
    files = list(upf_files) or debian_pseudopotentials(elements.split(','), functional)
    family = get_or_create_pseudo_family(family_label, files, ecutwfc, ecutrho)
    try:
        code = get_or_create_pw_code(get_or_create_localhost(computer_label), executable=pw_path)
    except (FileExistsError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from None
    click.echo(f'profile {profile.name}: code {code.full_label} (pk {code.pk}) runs {code.filepath_executable}')
    click.echo(f'family {family.label}: {", ".join(sorted(family.elements))}, cutoffs {ecutwfc:g}/{ecutrho:g} Ry')


@main.command()
@click.argument('identifier', metavar='GROUP_OR_NODE')
@click.argument('directory', type=click.Path(file_okay=False, path_type=Path))
@click.option('--format', 'file_format', type=click.Choice([*sorted(EXPORT_FORMATS), ENTRIES_FORMAT]), default='cif',
              show_default=True, help='A structure file each, or entries: pymatgen ComputedStructureEntry JSON.')
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
def export(identifier: str, directory: Path, file_format: str, profile_name: str | None) -> None:
    """Write the structures of GROUP_OR_NODE to DIRECTORY, with their lineage in DIRECTORY/metadata.json.

    GROUP_OR_NODE is a group label, a phase-diagram run (its hull structures), a dft_hull run (its relaxed
    structures) or a structure, by pk or UUID. The files feed any DFT code; metadata.json says, for each file, the
    node it came from and the conditions, seed, weights and relaxer behind it. ``--format entries`` writes
    DIRECTORY/entries.json instead: pymatgen ComputedStructureEntry objects (energy, MP2020 correction, the table row
    and lineage in ``data``) with the runs' elemental references, which ``PhaseDiagram`` reads as they are.
    """
    from ..provenance import computed_entries, lineage, load_source, structures_of

    _load_profile(profile_name)
    try:
        structures = structures_of(load_source(identifier))
    except ValueError as exception:
        raise click.ClickException(str(exception)) from None
    if not structures:
        raise click.ClickException(f'{identifier!r} holds no structure')
    directory.mkdir(parents=True, exist_ok=True)
    if file_format == ENTRIES_FORMAT:
        from ..hull import write_entries

        try:
            entries = computed_entries(structures)
        except ValueError as exception:
            raise click.ClickException(str(exception)) from None
        path = write_entries(directory / 'entries.json', entries)
        click.echo(f'wrote {len(structures)} structure entries and {len(entries) - len(structures)} elemental '
                   f'references to {path}')
        return
    metadata = {}
    for key, node in sorted(structures.items()):
        filename = f'{key}.{EXPORT_FORMATS[file_format]}'
        node.get_ase().write(directory / filename, format=EXPORT_FORMATS[file_format])
        metadata[filename] = {
            'key': key,
            'pk': node.pk,
            'uuid': node.uuid,
            'formula': node.get_formula(),
            'lineage': lineage(node),
        }
    (directory / 'metadata.json').write_text(json.dumps(metadata, indent=1, default=str))
    click.echo(f'wrote {len(structures)} {file_format} files and metadata.json to {directory}')
