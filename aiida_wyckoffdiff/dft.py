"""The DFT follow-up's set-up and launch: a pseudopotential family with cutoffs, and a ready ``dft_hull`` builder.

The family is an aiida-pseudo ``CutoffsPseudoPotentialFamily`` (what aiida-quantumespresso's protocols read
pseudopotentials and cutoffs from). Without UPF files of its own, it is built from the pseudopotentials Debian's
``quantum-espresso-data`` installs, which is what the tests and the example use offline.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiida import orm

from .exceptions import ConfigurationError, WyckoffDiffError

__all__ = [
    'DEBIAN_PSEUDO_DIR',
    'QUICK_OVERRIDES',
    'debian_pseudopotentials',
    'dft_hull_builder',
    'get_or_create_pseudo_family',
    'molecule_in_box',
    'run_dft_hull_example',
]

DEBIAN_PSEUDO_DIR = Path('/usr/share/espresso/pseudo')
_PREFERENCE = ('rrkjus', 'kjpaw')
"""Ultrasoft first: at the same accuracy they need the lowest wave-function cutoff of what Debian ships."""


def debian_pseudopotentials(
    elements: Iterable[str], functional: str = 'pbesol', folder: Path = DEBIAN_PSEUDO_DIR
) -> list[Path]:
    """One UPF file per element from ``folder`` for ``functional`` (scalar-relativistic, ultrasoft preferred).

    :raises ConfigurationError: naming the elements ``folder`` has no file for.
    """
    chosen, missing = [], []
    for element in sorted(set(elements)):
        pattern = re.compile(rf'^{re.escape(element)}\.{re.escape(functional)}-.*\.upf$', re.IGNORECASE)
        files = sorted(path for path in folder.glob('*') if pattern.match(path.name))
        if not files:
            missing.append(element)
            continue
        rank = {
            path: next((i for i, kind in enumerate(_PREFERENCE) if kind in path.name), len(_PREFERENCE))
            for path in files
        }
        chosen.append(min(files, key=lambda path: (rank[path], path.name)))
    if missing:
        raise ConfigurationError(
            f'no {functional} pseudopotential for {", ".join(missing)} in {folder} '
            '(Debian: apt-get install quantum-espresso-data; or pass UPF files)'
        )
    return chosen


def get_or_create_pseudo_family(label: str, files: Sequence[Path], ecutwfc: float, ecutrho: float) -> Any:
    """The ``CutoffsPseudoPotentialFamily`` ``label`` from ``files``, with these cutoffs (Ry) for every element.

    Run again, it finds the family and sets the cutoffs, so changing them needs no new family; a family of that
    label that lacks one of the elements of ``files`` is an error rather than a silent mismatch.
    """
    from aiida.common.exceptions import NotExistent
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    try:
        family = CutoffsPseudoPotentialFamily.collection.get(label=label)
    except NotExistent:
        with tempfile.TemporaryDirectory() as folder:
            for path in files:
                shutil.copy(path, folder)
            family = CutoffsPseudoPotentialFamily.create_from_folder(
                Path(folder),
                label,
                description=f'Created by wyckoffdiff dft-setup from {", ".join(map(str, files))}',
                pseudo_type=UpfData,
            )
    wanted = {UpfData(path).element for path in files}
    if missing := sorted(wanted - set(family.elements)):
        raise ConfigurationError(
            f'pseudopotential family {label} exists without {", ".join(missing)}: choose another label'
        )
    cutoffs = {element: {'cutoff_wfc': float(ecutwfc), 'cutoff_rho': float(ecutrho)} for element in family.elements}
    family.set_cutoffs(cutoffs, 'normal', unit='Ry')
    return family


def dft_hull_builder(
    source: str | int | orm.Node | orm.Group,
    *,
    pseudo_family: str,
    code: str = 'pw@localhost',
    protocol: str = 'balanced',
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    relax_type: str = 'positions_cell',
    references: dict[str, orm.StructureData] | None = None,
    reference_relax_types: dict[str, str] | None = None,
    initial_relaxation: bool = True,
) -> Any:
    """A ready builder of ``wyckoffdiff.dft_hull`` for the structures of ``source``.

    :param source: a finished ``wyckoffdiff.phase_diagram`` (its hull structures), a Group (its structures) or a
        structure, as a node, group, pk, UUID or group label. The potential's e_above_hull of each structure is read
        from the table of the phase-diagram run that relaxed it, where there is one.
    :param references: elemental reference structures by element; the MP ground states stand in for the others.
    :raises WyckoffDiffError: the extra is missing, the source or code does not exist, or it holds no structure.
    """
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from .provenance import load_source, potential_e_above_hull, structures_of
    from .workchains.dft_hull import DftHullWorkChain, require_dft_extra

    require_dft_extra()
    try:
        structures = structures_of(load_source(source))
        loaded = orm.load_code(code)
    except ValueError as exception:
        raise WyckoffDiffError(str(exception)) from None
    except (NotExistent, MultipleObjectsError) as exception:
        raise WyckoffDiffError(
            f'no code {code!r} in this profile ({exception}): run `wyckoffdiff dft-setup` first'
        ) from None
    if not structures:
        raise WyckoffDiffError(f'{source!r} holds no structure to relax')
    builder = DftHullWorkChain.get_builder()
    builder.structures = structures
    potential = {
        key: value for key, structure in structures.items() if (value := potential_e_above_hull(structure)) is not None
    }
    if potential:
        builder.potential_e_above_hull = potential
    builder.code = loaded
    builder.pseudo_family = pseudo_family
    builder.protocol = protocol
    builder.relax_type = relax_type
    builder.initial_relaxation = initial_relaxation
    if overrides:
        builder.overrides = overrides
    if options:
        builder.options = options
    if references:
        builder.references = references
    if reference_relax_types:
        builder.reference_relax_types = reference_relax_types
    return builder


QUICK_OVERRIDES = {
    'base_relax': {
        'kpoints_distance': 0.6,
        'meta_parameters': {'conv_thr_per_atom': 1e-7, 'etot_conv_thr_per_atom': 1e-3},
        'pw': {'parameters': {'CONTROL': {'forc_conv_thr': 1e-2}, 'CELL': {'press_conv_thr': 2.0}}},
    },
    'base_init_relax': {'kpoints_distance': 0.6},
    'meta_convergence': False,
}
"""Coarse k-points, loose thresholds, one relaxation cycle: a check that everything runs, not a verification."""


def molecule_in_box(name: str, box: float) -> orm.StructureData:
    """ASE's molecule ``name`` centred in a periodic cubic box of ``box`` Å: the DFT reference of O, N, H, F, Cl.

    Their Materials Project ground states are molecular crystals, which a cell relaxation without dispersion
    would blow apart; relax the molecule's positions only (``reference_relax_types``).
    """
    from ase.build import molecule

    atoms = molecule(name)
    atoms.set_cell([box] * 3)
    atoms.center()
    atoms.pbc = True
    return orm.StructureData(ase=atoms)


def run_dft_hull_example(argv: list[str] | None = None) -> orm.WorkChainNode:
    """Parse the example's options, run ``wyckoffdiff.dft_hull`` on a Li-O source and print the comparison."""
    import argparse

    from aiida.engine import run_get_node

    parser = argparse.ArgumentParser(description='DFT (Quantum ESPRESSO) follow-up of a Li-O hull')
    parser.add_argument(
        'source',
        nargs='?',
        default='wyckoffdiff/Li-O',
        help='Phase-diagram run (pk/UUID) or group label (default: wyckoffdiff/Li-O, filled by make run).',
    )
    parser.add_argument(
        '--family', default='wyckoffdiff/pbesol', help='Pseudopotential family (wyckoffdiff dft-setup).'
    )
    parser.add_argument('--code', default='pw@localhost')
    parser.add_argument('--protocol', default='fast', help='fast, balanced or stringent (default fast).')
    parser.add_argument('--quick', action='store_true', help='Coarse k-points and loose thresholds (a smoke run).')
    parser.add_argument('--box', type=float, default=8.0, help='Box edge (Å) of the O2 reference molecule (default 8).')
    parser.add_argument('--mpi', type=int, default=0, help='Run pw.x with this many MPI processes (default: no MPI).')
    options = parser.parse_args(argv)
    mpi = {
        'withmpi': options.mpi > 0,
        'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': max(options.mpi, 1)},
    }
    builder = dft_hull_builder(
        options.source,
        pseudo_family=options.family,
        code=options.code,
        protocol=options.protocol,
        overrides=QUICK_OVERRIDES if options.quick else None,
        options={**mpi, 'max_wallclock_seconds': 24 * 3600, 'environment_variables': {'OMP_NUM_THREADS': '1'}},
        references={'O': molecule_in_box('O2', options.box)},
        reference_relax_types={'O': 'positions'},
    )
    _, node = run_get_node(builder)
    print(f'DftHullWorkChain<{node.pk}> finished: [{node.exit_status}] {node.exit_message or "ok"}')
    if 'table' not in node.outputs:
        raise SystemExit(1)
    print(f'DFT references (eV/atom): {node.outputs.elemental_energies.get_dict()}')
    print(f'{"key":>16} {"formula":>8} {"DFT e_hull":>10} {"potential":>10} {"diff":>8} {"max F":>7}  reason')
    for row in node.outputs.table.get_list():
        values = [row[name] for name in ('dft_e_above_hull', 'potential_e_above_hull', 'difference', 'final_max_force')]
        text = ' '.join(f'{value:>+10.3f}' if value is not None else f'{"-":>10}' for value in values[:3])
        force = f'{values[3]:7.3f}' if values[3] is not None else f'{"-":>7}'
        print(f'{row["key"]:>16} {row["formula"]:>8} {text} {force}  {row["reason"] or ""}')
    print(f'provenance: verdi node graph generate {node.pk}   |   wyckoffdiff export {node.pk} DIR --format poscar')
    return node
