"""Realization from real crystals: the geometry of a training crystal with the same Wyckoff arrangement.

A protostructure fixes the space group and which elements sit on which Wyckoff orbits, but not the free coordinates
or the lattice. Most real crystals reuse an arrangement of orbits of an earlier one, so where a *training-split*
crystal has the protostructure's arrangement, its lattice and coordinates are a far better start than PyXtal's random
draw: each of its elements is replaced by the protostructure's element on the same orbits (found up to the order of
the elements, which a label takes from the alphabet, and up to the group's setting) and the cell is scaled by the
ratio of the atoms' volumes fitted to the training crystals (3.4 % median volume error on held-out crystals, against
8.6 % for pymatgen's ``DLSVolumePredictor``: docs/realization.md). Only training-split crystals are templates, never
validation or test ones: held-out checks would otherwise read their answers.

The library of templates ships in the package (``resources/templates.jsonl.gz``, written by
:func:`build_template_library` from the shared MP data), so realization needs neither the data folder nor a
dataset build; its header records the data file's sha256.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ProtostructureError
from .symmetry import Protostructure, equivalent_settings, label_against, wyckoff_positions

if TYPE_CHECKING:
    import pandas as pd
    from pymatgen.core import Structure

__all__ = [
    'REALIZATION_METHODS',
    'Template',
    'TemplateLibrary',
    'arrangement_of',
    'bond_problem',
    'build_template_library',
    'fit_element_volumes',
    'fitted_volume',
    'predicted_volume',
    'prototype_of',
    'shipped_templates',
    'substitute',
]

TEMPLATES_FILE = 'templates.jsonl.gz'
REALIZATION_METHODS = ('template', 'pyxtal')
"""``template``: a training crystal's geometry where one has the prototype, PyXtal for the rest; ``pyxtal``: always
PyXtal's random draw."""
BOND_FACTOR = 0.6
"""A candidate with two atoms closer than this fraction of the sum of their covalent radii (ASE's table, Cordero et
al. 2008) has overlapping atoms: none of 1,992 training crystals comes below it, 0.2 % below 0.7 (docs/realization.md)."""


@functools.cache
def _electronegativity_order(symbol: str) -> tuple[float, int]:
    """Pauling electronegativity, then Pettifor's Mendeleev number (for ties and the noble gases, which have none)."""
    from pymatgen.core import Element

    element = Element(symbol)
    return (5.0 if element.is_noble_gas else element.X, element.mendeleev_no)


def prototype_of(label: str) -> str:
    """The element-free prototype of a protostructure label: the part before ``:``."""
    return label.split(':', 1)[0]


@functools.lru_cache(maxsize=65536)
def arrangement_of(label: str) -> str:
    """The prototype up to the order of its elements: the Pearson symbol, the group and each element's Wyckoff
    letters, sorted, in the group's equivalent setting that gives the least string. ``A2B_tP6_136_f_a`` (rutile) and
    ``AB2_tP6_136_a_f`` (rutile written for a compound whose cation comes first in the alphabet) are one arrangement:
    a prototype's letters follow its crystal's alphabet, and the setting a label chooses follows them."""
    _, pearson, spacegroup, *_ = prototype_of(label).split('_')
    written = min(sorted(_letters_in_setting(label, order)) for order in equivalent_settings(int(spacegroup)))
    return '_'.join([pearson, spacegroup, *written])


def _letters_in_setting(label: str, order: Sequence[int]) -> list[str]:
    """Each element's Wyckoff letters (in the label's element order) in another setting of its group: ``order[i]``
    is the position that position ``i`` becomes (:func:`~aiida_wyckoffdiff.symmetry.equivalent_settings`)."""
    _, _, spacegroup, *blocks = prototype_of(label).split('_')
    letters = [position.letter for position in wyckoff_positions(int(spacegroup))]
    row = {letter: index for index, letter in enumerate(letters)}
    renamed = ([(int(order[row[letter]]), count) for count, letter in re.findall(r'(\d*)([A-Za-z])', block)]
               for block in blocks)
    return [''.join(f'{count}{letters[index]}' for index, count in sorted(block)) for block in renamed]


def _chemical_distance(mapping: dict[str, str]) -> int:
    """The summed differences of Pettifor's Mendeleev numbers of the elements that replace each other."""
    from pymatgen.core import Element

    return sum(abs(Element(old).mendeleev_no - Element(new).mendeleev_no) for old, new in mapping.items())


@dataclass(frozen=True)
class Template:
    """A training-split crystal: its material id, protostructure label and geometry (as its CIF gave it; the
    structure is built when first asked for, so a library of thousands loads in a moment)."""

    material_id: str
    label: str
    lattice: tuple[tuple[float, ...], ...]
    species: tuple[str, ...]
    coords: tuple[tuple[float, ...], ...]

    @classmethod
    def from_structure(cls, material_id: str, label: str, structure: Structure) -> Template:
        return cls(material_id, label, tuple(map(tuple, structure.lattice.matrix.tolist())),
                   tuple(site.specie.symbol for site in structure), tuple(map(tuple, structure.frac_coords.tolist())))

    @functools.cached_property
    def structure(self) -> Structure:
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.species, self.coords)

    @property
    def elements(self) -> list[str]:
        return self.label.split(':', 1)[1].split('-')

    def mapping_to(self, protostructure: Protostructure) -> dict[str, str]:
        """Which of the protostructure's elements takes each of this crystal's places: the one on the same Wyckoff
        orbits (in one of the group's equivalent settings). Where that leaves a choice (elements with the same
        letters, or several settings), the chemically closest assignment, then the first in label order.

        Raises :class:`ProtostructureError` if the two do not have one arrangement of orbits (:func:`arrangement_of`).
        """
        settings = equivalent_settings(protostructure.spacegroup)
        wanted = dict(zip(protostructure.elements, _letters_in_setting(protostructure.label, settings[0]), strict=True))
        assignments = []
        for setting in settings:
            letters = _letters_in_setting(self.label, setting)
            assignments += [dict(zip(self.elements, order, strict=True))
                            for order in itertools.permutations(protostructure.elements)
                            if [wanted[element] for element in order] == letters]
        if not assignments:
            raise ProtostructureError(f'{self.label} does not have the arrangement of {protostructure.label}')
        return min(assignments, key=_chemical_distance)

    def distance_to(self, protostructure: Protostructure) -> int:
        """Chemical distance to a protostructure of the same arrangement: the summed differences of Pettifor's
        Mendeleev numbers of the elements that replace each other (0: the same elements)."""
        return _chemical_distance(self.mapping_to(protostructure))

    def as_record(self) -> dict[str, Any]:
        return {
            'material_id': self.material_id,
            'label': self.label,
            'lattice': [[round(x, 5) for x in row] for row in self.lattice],
            'species': list(self.species),
            'coords': [[round(x % 1.0, 5) for x in site] for site in self.coords],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Template:
        return cls(record['material_id'], record['label'], tuple(map(tuple, record['lattice'])),
                   tuple(record['species']), tuple(map(tuple, record['coords'])))


class TemplateLibrary:
    """Training crystals by prototype; ``data_sha256`` is the sha256 of the data file they were read from,
    ``element_volumes`` the volumes per atom fitted to them (:func:`fit_element_volumes`)."""

    def __init__(
        self,
        templates: Iterable[Template],
        data_sha256: str | None = None,
        element_volumes: dict[str, float] | None = None,
    ) -> None:
        self.data_sha256 = data_sha256
        self.element_volumes = element_volumes or {}
        self.by_prototype: dict[str, list[Template]] = defaultdict(list)
        self._arrangement_index: dict[int, dict[str, list[str]]] = {}
        for template in templates:
            self.by_prototype[prototype_of(template.label)].append(template)

    def __len__(self) -> int:
        return sum(map(len, self.by_prototype.values()))

    def _by_arrangement(self, spacegroup: int) -> dict[str, list[str]]:
        """The group's prototypes by arrangement, indexed when first asked (a group's settings take PyXtal a moment)."""
        if spacegroup not in self._arrangement_index:
            grouped: dict[str, list[str]] = defaultdict(list)
            for prototype in sorted(self.by_prototype):
                if int(prototype.split('_')[2]) == spacegroup:
                    grouped[arrangement_of(prototype)].append(prototype)
            self._arrangement_index[spacegroup] = grouped
        return self._arrangement_index[spacegroup]

    @functools.cached_property
    def _by_group(self) -> dict[tuple[int, int], list[str]]:
        grouped: dict[tuple[int, int], list[str]] = defaultdict(list)
        for prototype, templates in sorted(self.by_prototype.items()):
            grouped[(int(prototype.split('_')[2]), len(templates[0].elements))].append(prototype)
        return grouped

    def arrangements(self, chemsys: Iterable[str], spacegroup: int, max_atoms: int) -> list[Protostructure]:
        """The elements of ``chemsys`` on each prototype of the group's templates with as many elements, within the
        atom limit: distinct, sorted by label.

        Each template says which element goes where: the request's elements take its elements' places in the same
        order of electronegativity (the most electronegative on its anion's orbits), so a prototype yields one
        arrangement per ordering its crystals have. A prototype's letters follow its crystal's alphabetical order,
        which says nothing about the request: rutile TiO2 is ``A2B_..._f_a:O-Ti``, so Li-O in label order would
        put lithium on the anion's orbits."""
        requested = sorted(set(chemsys), key=_electronegativity_order)
        arrangements: dict[str, Protostructure] = {}
        for prototype in self._by_group.get((spacegroup, len(requested)), []):
            templates = self.by_prototype[prototype]
            placeholder = Protostructure.from_label(templates[0].label)
            if placeholder.num_atoms > max_atoms:
                continue
            # the electronegativity rank of the element on each of the prototype's element orbits, per template
            ranks = {tuple(sorted(t.elements, key=_electronegativity_order).index(e) for e in t.elements)
                     for t in templates}
            for rank in sorted(ranks):
                assign = {old: requested[r] for old, r in zip(templates[0].elements, rank, strict=True)}
                arrangement = Protostructure(spacegroup, tuple((assign[e], w, n) for e, w, n in placeholder.sites))
                arrangements.setdefault(arrangement.label, arrangement)
        return [arrangements[label] for label in sorted(arrangements)]

    def templates_for(self, protostructure: Protostructure | str, count: int) -> list[Template]:
        """At most ``count`` templates of the protostructure's arrangement of orbits, the most chemically similar first
        (ties by material id, so the choice never depends on the library's order).

        The arrangement, not the prototype string: a prototype's letters follow its crystal's alphabet, so TiO2 on the
        orbits of a chromium oxide's rutile (``AB2_tP6_136_a_f:Cr-O``) is labelled ``A2B_tP6_136_f_a:O-Ti``."""
        if isinstance(protostructure, str):
            protostructure = Protostructure.from_label(protostructure)
        prototypes = self._by_arrangement(protostructure.spacegroup).get(arrangement_of(protostructure.label), [])
        same = [template for prototype in prototypes for template in self.by_prototype[prototype]]
        return sorted(same, key=lambda t: (t.distance_to(protostructure), t.material_id))[:count]

    def write(self, path: Path) -> None:
        """One JSON line per template after a header line; no time or name in the gzip header, so a rebuild of the
        same data gives the same bytes."""
        with open(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, filename='') as stream:
            header = {'data_sha256': self.data_sha256, 'element_volumes': self.element_volumes}
            stream.write((json.dumps(header) + '\n').encode())
            for prototype in sorted(self.by_prototype):
                for template in self.by_prototype[prototype]:
                    stream.write((json.dumps(template.as_record()) + '\n').encode())

    @classmethod
    def read(cls, path: Path | Any) -> TemplateLibrary:
        with gzip.open(path, 'rt') as stream:
            header = json.loads(next(stream))
            templates = [Template.from_record(json.loads(line)) for line in stream]
        return cls(templates, header.get('data_sha256'), header.get('element_volumes'))


@functools.cache
def shipped_templates() -> TemplateLibrary:
    """The library shipped in the package: every training-split crystal of the shared MP data."""
    from importlib import resources

    with resources.as_file(resources.files('aiida_wyckoffdiff').joinpath('resources', TEMPLATES_FILE)) as path:
        return TemplateLibrary.read(path)


def build_template_library(data_dir: Path, frame: pd.DataFrame, output: Path) -> TemplateLibrary:
    """Write the library of the dataset's training-split crystals (labels from the dataset ``frame``, structures
    from the data folder's main file)."""
    import pandas as pd
    from pymatgen.core import Structure

    from .data import MAIN_FILE
    from .files import file_sha256

    labels = frame.loc[frame['split'] == 'train'].set_index('material_id')['label']
    table = pd.read_csv(data_dir / MAIN_FILE, usecols=['material_id', 'cif'])
    table = table[table['material_id'].isin(labels.index)]
    templates = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # CIF parser chatter about rounding
        for material_id, cif in zip(table['material_id'], table['cif'], strict=True):
            structure = Structure.from_str(cif, fmt='cif')
            templates.append(Template.from_structure(material_id, labels[material_id], structure))
    library = TemplateLibrary(templates, file_sha256(data_dir / MAIN_FILE), fit_element_volumes(templates))
    library.write(output)
    return library


def fit_element_volumes(templates: Iterable[Template]) -> dict[str, float]:
    """Å^3 per atom of each element, fitted by least squares to crystals' volumes (a cell's volume as the sum of its
    atoms'), at least 1 Å^3."""
    import numpy as np

    templates = list(templates)
    elements = sorted({e for t in templates for e in t.species})
    column = {element: index for index, element in enumerate(elements)}
    counts = np.zeros((len(templates), len(elements)))
    for row, template in enumerate(templates):
        for element in template.species:
            counts[row, column[element]] += 1
    volumes = np.abs(np.linalg.det(np.array([t.lattice for t in templates])))
    fitted, *_ = np.linalg.lstsq(counts, volumes, rcond=None)
    return {element: round(max(1.0, float(v)), 3) for element, v in zip(elements, fitted, strict=True)}


def fitted_volume(species: Iterable[str]) -> float | None:
    """The volume of a cell of these atoms by the shipped library's fitted volumes per atom (those of the training
    crystals, :func:`fit_element_volumes`); ``None`` for an element no training crystal has."""
    volumes = shipped_templates().element_volumes
    try:
        return sum(volumes[element] for element in species)
    except KeyError:
        return None


def predicted_volume(structure: Structure, template: Structure | None = None) -> float | None:
    """The cell volume of ``structure``: the template's scaled by the ratio of the atoms' fitted volumes where it
    comes from a template (its species at the same sites), else the sum of those volumes; ``None`` where an element
    has none."""
    new = fitted_volume(site.specie.symbol for site in structure)
    if template is None or new is None:
        return new
    old = fitted_volume(site.specie.symbol for site in template)
    return None if old is None else template.volume * new / old


def bond_problem(structure: Structure, factor: float = BOND_FACTOR) -> str | None:
    """Why a candidate's atoms overlap (the closest pair, far below the sum of their covalent radii), or ``None``."""
    import numpy as np
    from ase.data import atomic_numbers, covalent_radii

    radii = np.array([covalent_radii[atomic_numbers[site.specie.symbol]] for site in structure])
    distances = structure.distance_matrix + np.eye(len(structure)) * 1e3
    if len(structure) == 1:  # one atom: its distance to its own images is the shortest lattice vector
        distances = np.array([[min(structure.lattice.abc)]])
    ratio = distances / np.add.outer(radii, radii)
    i, j = np.unravel_index(np.argmin(ratio), ratio.shape)
    if ratio[i, j] >= factor:
        return None
    first, second = structure[int(i)].specie.symbol, structure[int(j)].specie.symbol
    return (f'{first}-{second} {distances[i, j]:.2f} Å apart, below {factor} of their covalent radii '
            f'({radii[i] + radii[j]:.2f} Å)')


def substitute(protostructure: Protostructure, template: Template) -> Structure:
    """The template's geometry with the protostructure's elements, scaled to the predicted volume.

    Raises :class:`ProtostructureError` if the result does not carry the protostructure's label (a template of
    another arrangement, or a substitution that changes the symmetry).
    """
    mapping = template.mapping_to(protostructure)
    structure = template.structure.copy()
    structure.replace_species(mapping)
    volume = predicted_volume(structure, template.structure)
    if volume is not None:
        structure.scale_lattice(volume)
    found = label_against(structure, protostructure.label)
    if found != protostructure.label:
        raise ProtostructureError(f'{template.material_id} with {protostructure.chemsys} came out as {found}, '
                                  f'not {protostructure.label}')
    return structure
