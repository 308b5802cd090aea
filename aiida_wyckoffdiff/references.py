"""Materials Project reference phases shipped inside the package.

The convex hulls need every known phase of a chemical system with its formation energy, and the formation
energies need each element's ground-state structure. Both come from the shared MP data (CC BY 4.0) and are
compacted by ``build_reference_files`` into ``aiida_wyckoffdiff/resources`` so an installed package works without
the shared folder. Each reference row with a structure keeps its canonical protostructure label, which is how a
generated structure is judged new or known.
"""

from __future__ import annotations

import gzip
import json
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
    'ELEMENTS_FILE',
    'ENTRIES_FILE',
    'ElementalReference',
    'all_reference_entries',
    'build_reference_files',
    'elemental_references',
    'known_elements',
    'reference_entries',
]

ENTRIES_FILE = 'mp_reference_entries.csv.gz'
ELEMENTS_FILE = 'mp_elemental_ground_states.json.gz'
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
    """The lowest-energy structure of an element in the data; ``formation_energy_per_atom`` is above MP's ground state.

    It is non-zero (eV/atom) where MP's ground-state polymorph has no structure in the data, and is then added back
    when the potential's energy of this polymorph is used as the elemental reference.
    """

    element: str
    material_id: str
    formation_energy_per_atom: float
    structure: Structure


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


def elemental_references(elements: list[str] | tuple[str, ...]) -> list[ElementalReference]:
    """Ground-state structures to evaluate with the potential, one per element.

    :raises ReferenceDataError: for an element with no structure in the data.
    """
    from pymatgen.core import Structure

    data = _elemental_data()
    if missing := sorted(set(elements) - set(data)):
        raise ReferenceDataError(
            f'No elemental structure for {", ".join(missing)} in the shipped MP data, so formation energies '
            'involving it cannot be computed.'
        )
    return [
        ElementalReference(
            element,
            data[element]['material_id'],
            data[element]['formation_energy_per_atom'],
            Structure.from_str(data[element]['cif'], fmt='cif'),
        )
        for element in sorted(set(elements))
    ]


def known_elements() -> frozenset[str]:
    """Elements with a ground-state structure in the shipped data, i.e. those formation energies can use."""
    return frozenset(_elemental_data())
