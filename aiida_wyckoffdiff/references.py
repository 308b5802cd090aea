"""Materials Project reference phases shipped inside the package.

The convex hulls need every known phase of a chemical system with its formation energy, and the formation
energies need each element's ground-state structure. Both come from the shared MP data (CC BY 4.0) and are
compacted by ``build_reference_files`` into ``aiida_wyckoffdiff/resources`` so an installed package works without
the shared folder. Each reference row with a structure keeps its canonical protostructure label, which is how a
generated structure is judged new or known.

Twelve elements of the model's vocabulary (V, Cr, Zn, Mo, Lu, Os, Pt, Au, Ac, Th, Pa, U) have MP energies but no
elemental structure in the data. Their reference is the standard state ASE tabulates (``ase.data.reference_states``,
Kittel's lattice constants), built by ``ase.build.bulk``; where ASE gives the lattice but not the atomic positions
(U, Pa), pymatgen's AFLOW prototype of that element with ASE's lattice supplies them. Molecular elements (H, N, O, F,
Cl, Br, I) and the noble gases are covered by MP's molecular crystals in the data; ASE tabulates them as molecules or
atoms, which are no crystal reference, so they are refused rather than guessed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ReferenceDataError

if TYPE_CHECKING:
    import pandas as pd
    from pymatgen.core import Structure

__all__ = [
    'AFLOW_SOURCE',
    'ELEMENTS_FILE',
    'ENTRIES_FILE',
    'LIBRARY_SOURCE',
    'ElementalReference',
    'all_reference_entries',
    'build_reference_files',
    'elemental_reference',
    'elemental_references',
    'elements_with_references',
    'reference_entries',
]

ENTRIES_FILE = 'mp_reference_entries.csv.gz'
ELEMENTS_FILE = 'mp_elemental_ground_states.json.gz'
LIBRARY_SOURCE = 'ase-reference-state'
"""``ElementalReference.source`` of a reference built by ``ase.build.bulk`` from ASE's tabulated standard state."""
AFLOW_SOURCE = 'ase-reference-state+aflow-prototype'
"""``source`` prefix of one whose atomic positions come from pymatgen's AFLOW prototype library (then its label)."""
_ASE_BUILDS = frozenset({'sc', 'fcc', 'bcc', 'hcp', 'diamond'})
"""ASE reference-state symmetries ``ase.build.bulk`` builds completely; for the others ASE tabulates the lattice only
(``bulk`` refuses most, and builds U's four-atom cell as one atom)."""
_MOLECULAR = frozenset({'diatom', 'atom'})
_LATTICE_TOLERANCE = 0.03
"""Relative difference of the sorted conventional lattice constants at which an AFLOW prototype is ASE's state."""
PROVENANCE = (
    'Derived from Materials Project data (Jain et al., APL Materials 1, 011002 (2013)), licensed CC BY 4.0, '
    'via the MP-20 (CDVAE), MPTS-52 (DiffCSP), MP-40 (Chemeleon) and LeMat-GenBench copies described in '
    'shared/data/README.md. Energies: MP GGA/GGA+U with the corrections in use when those datasets were made '
    '(believed MP2020).'
)
_ENTRY_COLUMNS = [
    'material_id',
    'formula',
    'chemsys',
    'spacegroup',
    'formation_energy_per_atom',
    'e_above_hull',
    'label',
]


@dataclass(frozen=True)
class ElementalReference:
    """The structure whose relaxed energy is an element's reference; ``formation_energy_per_atom`` is above MP's ground
    state.

    From the MP data: the lowest-energy structure of the element there; its formation energy (eV/atom) is non-zero
    where MP's ground-state polymorph has no structure in the data, and is then added back when the potential's energy
    of this polymorph is used as the elemental reference. From the library: taken to be MP's ground state (0).

    :param source: the MP material id, ``LIBRARY_SOURCE``, or ``AFLOW_SOURCE:<prototype label>``.
    """

    element: str
    source: str
    formation_energy_per_atom: float
    structure: Structure

    @property
    def from_library(self) -> bool:
        """Whether the structure is a library's standard state rather than one of the MP data."""
        return self.source.startswith(LIBRARY_SOURCE)


def _label_or_empty(cif: str) -> str:
    from pymatgen.core import Structure

    from .symmetry import structure_label

    try:
        return structure_label(Structure.from_str(cif, fmt='cif'))
    except Exception:  # noqa: BLE001 - an unparsable CIF or failed symmetry search only costs this row its label
        return ''


def build_reference_files(data_dir: Path, output_dir: Path, processes: int = 1) -> tuple[Path, Path]:
    """Write the compact reference table and the elemental ground states from the shared data.

    Rows: the main file and the structure-less MP-20 train energies (the extra file's energies come from later MP
    versions and are left out, except its structures of MP-20 materials, which label their rows).

    :param data_dir: the shared data folder with ``mp_structures.csv.gz`` and friends.
    :param output_dir: where to write ``ENTRIES_FILE`` and ``ELEMENTS_FILE``.
    :param processes: worker processes for the symmetry labels (about 10 ms per structure).
    """
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    main = pd.read_csv(data_dir / 'mp_structures.csv.gz')
    extra = pd.read_csv(data_dir / 'mp_structures_extra.csv.gz')
    extra = extra[extra['source'].str.contains('mp_20/train(formation_energy_per_atom)', regex=False)]
    energies = pd.read_csv(data_dir / 'mp20_train_energies_nostructure.csv.gz')
    energies = energies[~energies['material_id'].isin(main['material_id'])]
    cifs = dict(zip(extra['material_id'], extra['cif'])) | dict(zip(main['material_id'], main['cif']))
    table = pd.concat([main.drop(columns='cif'), energies], ignore_index=True)
    table['chemsys'] = table['elements'].str.replace(' ', '-')
    table['e_above_hull'] = table['e_above_hull'].where(table['material_id'].isin(main['material_id']))
    with ProcessPoolExecutor(processes) as pool:
        labels = dict(zip(cifs, pool.map(_label_or_empty, cifs.values(), chunksize=64)))
    table['label'] = table['material_id'].map(labels).fillna('')
    table = table.dropna(subset=['formation_energy_per_atom']).sort_values('material_id')
    output_dir.mkdir(parents=True, exist_ok=True)
    entries_path = output_dir / ENTRIES_FILE
    with gzip.open(entries_path, 'wt') as handle:
        handle.write(f'# {PROVENANCE}\n')
        table[_ENTRY_COLUMNS].to_csv(handle, index=False, float_format='%.6f')
    structured = pd.concat([main, extra], ignore_index=True)
    elementals = structured[~structured['elements'].str.contains(' ')].dropna(subset=['formation_energy_per_atom'])
    lowest = elementals.sort_values(['formation_energy_per_atom', 'nsites']).groupby('elements').head(1)
    elements = {
        row.elements: {
            'material_id': row.material_id,
            'formation_energy_per_atom': row.formation_energy_per_atom,
            'cif': row.cif,
        }
        for row in lowest.itertuples()
    }
    elements_path = output_dir / ELEMENTS_FILE
    with gzip.open(elements_path, 'wt') as handle:
        json.dump({'provenance': PROVENANCE, 'elements': elements}, handle)
    return entries_path, elements_path


def _resource(name: str) -> Any:
    return resources.files('aiida_wyckoffdiff').joinpath('resources', name)


@lru_cache(maxsize=1)
def all_reference_entries() -> pd.DataFrame:
    import pandas as pd

    with _resource(ENTRIES_FILE).open('rb') as raw, gzip.open(raw, 'rt') as handle:
        return pd.read_csv(handle, comment='#', keep_default_na=False, na_values={'e_above_hull': ['']})


def reference_entries(elements: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """All reference phases whose elements are a subset of ``elements`` (the whole chemical space, for a hull).

    :raises ReferenceDataError: if an element has no reference phase at all.
    """
    table = all_reference_entries()
    wanted = set(elements)
    subset = table[table['chemsys'].map(lambda chemsys: set(chemsys.split('-')) <= wanted)]
    known = {element for chemsys in subset['chemsys'] for element in chemsys.split('-')}
    if missing := sorted(wanted - known - set(_elemental_data())):
        raise ReferenceDataError(
            f'No reference phase for {", ".join(missing)} in the shipped MP data: '
            f'a hull for {"-".join(sorted(wanted))} cannot be built.'
        )
    return subset.reset_index(drop=True)


@lru_cache(maxsize=1)
def _elemental_data() -> dict[str, dict[str, Any]]:
    with _resource(ELEMENTS_FILE).open('rb') as raw, gzip.open(raw, 'rt') as handle:
        return json.load(handle)['elements']


def elemental_reference(element: str) -> ElementalReference:
    """The reference structure of one element: MP's where the data has one, otherwise the library's standard state.

    :raises ReferenceDataError: naming why neither source has a crystal of the element.
    """
    from pymatgen.core import Structure

    if (row := _elemental_data().get(element)) is not None:
        return ElementalReference(
            element, row['material_id'], row['formation_energy_per_atom'], Structure.from_str(row['cif'], fmt='cif')
        )
    source, structure = _library_reference(element)
    return ElementalReference(element, source, 0.0, Structure.from_dict(structure))


def elemental_references(elements: Iterable[str]) -> list[ElementalReference]:
    """``elemental_reference`` of each element, sorted by element.

    :raises ReferenceDataError: naming every element without one and why.
    """
    references, missing = [], []
    for element in sorted(set(elements)):
        try:
            references.append(elemental_reference(element))
        except ReferenceDataError as exception:
            missing.append(str(exception))
    if missing:
        raise ReferenceDataError(' '.join(missing) + ' Formation energies involving them cannot be computed.')
    return references


def elements_with_references(elements: Iterable[str]) -> set[str]:
    """The elements among ``elements`` that have a reference structure, i.e. those formation energies can use."""
    return {element for element in set(elements) if _has_reference(element)}


@lru_cache(maxsize=None)
def _has_reference(element: str) -> bool:
    if element in _elemental_data():
        return True
    try:
        _library_reference(element)
    except ReferenceDataError:
        return False
    return True


@lru_cache(maxsize=None)
def _library_reference(element: str) -> tuple[str, dict[str, Any]]:
    """``(source, Structure.as_dict())`` of the element's standard state in ASE's table (see the module docstring)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states
    from pymatgen.io.ase import AseAtomsAdaptor

    state = reference_states[atomic_numbers[element]] if element in atomic_numbers else None
    if state is None:
        raise ReferenceDataError(f'{element}: no elemental structure in the shipped MP data, and none in ASE\'s table.')
    if state['symmetry'] in _MOLECULAR:
        raise ReferenceDataError(
            f'{element}: no elemental structure in the shipped MP data, and ASE tabulates it as a {state["symmetry"]}, '
            'not a crystal: its MP reference is a molecular crystal, which only the MP data could supply.'
        )
    if state['symmetry'] in _ASE_BUILDS:
        return LIBRARY_SOURCE, AseAtomsAdaptor.get_structure(bulk(element)).as_dict()
    if (prototype := _aflow_prototype(element, state)) is not None:
        label, structure = prototype
        return f'{AFLOW_SOURCE}:{label}', structure.as_dict()
    raise ReferenceDataError(
        f'{element}: no elemental structure in the shipped MP data; ASE tabulates its {state["symmetry"]} lattice '
        "without the atomic positions, and pymatgen's AFLOW prototypes hold none of the element on that lattice."
    )


def _aflow_prototype(element: str, state: dict[str, Any]) -> tuple[str, Structure] | None:
    """pymatgen's AFLOW prototype of ``element`` itself whose conventional lattice is ASE's reference state's; ``None``
    where there is none, or ASE gives no lattice constant (Pu)."""
    import numpy as np
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .symmetry import pymatgen_prototypes

    if 'a' not in state:
        return None
    a = state['a']
    expected = np.sort([a, a * state.get('b/a', 1.0), a * state.get('c/a', 1.0)])
    for prototype in pymatgen_prototypes().AFLOW_PROTOTYPE_LIBRARY:
        structure = prototype['snl'].structure
        if [e.symbol for e in structure.composition] != [element]:
            continue
        abc = np.sort(SpacegroupAnalyzer(structure).get_conventional_standard_structure().lattice.abc)
        if np.all(np.abs(abc / expected - 1) < _LATTICE_TOLERANCE):
            return prototype['tags']['aflow'], structure
    return None
