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

__all__ = ['DEBIAN_PSEUDO_DIR', 'debian_pseudopotentials', 'dft_hull_builder', 'get_or_create_pseudo_family']

DEBIAN_PSEUDO_DIR = Path('/usr/share/espresso/pseudo')
_PREFERENCE = ('rrkjus', 'kjpaw')
"""Ultrasoft first: at the same accuracy they need the lowest wave-function cutoff of what Debian ships."""


def debian_pseudopotentials(elements: Iterable[str], functional: str = 'pbesol', folder: Path = DEBIAN_PSEUDO_DIR) -> list[Path]:
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
        rank = {path: next((i for i, kind in enumerate(_PREFERENCE) if kind in path.name), len(_PREFERENCE)) for path in files}
        chosen.append(min(files, key=lambda path: (rank[path], path.name)))
    if missing:
        raise ConfigurationError(f'no {functional} pseudopotential for {", ".join(missing)} in {folder} '
                                 '(Debian: apt-get install quantum-espresso-data; or pass UPF files)')
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
                Path(folder), label, description=f'Created by wyckoffdiff dft-setup from {", ".join(map(str, files))}',
                pseudo_type=UpfData,
            )
    wanted = {UpfData(path).element for path in files}
    if missing := sorted(wanted - set(family.elements)):
        raise ConfigurationError(f'pseudopotential family {label} exists without {", ".join(missing)}: choose another label')
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
        raise WyckoffDiffError(f'no code {code!r} in this profile ({exception}): run `wyckoffdiff dft-setup` first') from None
    if not structures:
        raise WyckoffDiffError(f'{source!r} holds no structure to relax')
    builder = DftHullWorkChain.get_builder()
    builder.structures = structures
    potential = {key: value for key, structure in structures.items()
                 if (value := potential_e_above_hull(structure)) is not None}
    if potential:
        builder.potential_e_above_hull = potential
    builder.code = loaded
    builder.pseudo_family = pseudo_family
    builder.protocol = protocol
    builder.relax_type = relax_type
    if overrides:
        builder.overrides = overrides
    if options:
        builder.options = options
    if references:
        builder.references = references
    if reference_relax_types:
        builder.reference_relax_types = reference_relax_types
    return builder
