"""Wyckoff tables and protostructures.

A *protostructure* is a space group plus the elements that occupy each of its Wyckoff positions,
with no coordinates and no lattice: the object the diffusion model generates. It is written as
pymatgen's protostructure label (``pymatgen.analysis.prototypes``), e.g. spinel
``A2BC4_cF56_227_c_b_e:Al-Mg-O``: anonymous formula, Pearson symbol (atoms in the conventional
cell), space group, the Wyckoff letters of each element in alphabetical element order, and the
chemical system. Letters are canonicalized over the group's alternative origins, so equivalent
labelings compare equal.

The Wyckoff table (letters, multiplicities in the conventional cell, free coordinates) comes from
PyXtal. Positions are ordered a, b, ..., z, A (only Pmmm, No. 47, reaches A).
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .exceptions import ProtostructureError

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

__all__ = [
    'LETTER_ORDER',
    'NUM_SPACEGROUPS',
    'Protostructure',
    'SpaceGroupInfo',
    'WyckoffPosition',
    'check_spacegroup',
    'equivalent_settings',
    'label_against',
    'pymatgen_prototypes',
    'spacegroup_info',
    'structure_label',
    'wyckoff_positions',
]

NUM_SPACEGROUPS = 230
LETTER_ORDER = 'abcdefghijklmnopqrstuvwxyzA'
"""Order of Wyckoff letters within a group: the International Tables order, Pmmm's 27th is ``A``."""

_CRYSTAL_FAMILY_LETTER = {
    'triclinic': 'a',
    'monoclinic': 'm',
    'orthorhombic': 'o',
    'tetragonal': 't',
    'trigonal': 'h',
    'hexagonal': 'h',
    'cubic': 'c',
}


class _DeferredLibrary(Sequence):
    """A sequence read from its file the first time anything looks into it."""

    def __init__(self, load: Callable[[], list[Any]]) -> None:
        self._load: Callable[[], list[Any]] | None = load
        self._items: list[Any] = []

    def _loaded(self) -> list[Any]:
        if self._load is not None:
            self._items, self._load = self._load(), None
        return self._items

    def __getitem__(self, index: Any) -> Any:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._loaded())


def pymatgen_prototypes() -> ModuleType:
    """``pymatgen.analysis.prototypes``, imported without reading its AFLOW prototype library until it is used.

    The module reads the library (1,100 structures with their references) on import: 2.5-3.5 s on this machine, most
    of the start-up of a ``wyckoffdiff generate`` that then samples for 1 s, and paid by every process that writes a
    label. The labels need only its Wyckoff tables; the library is read when something iterates it (the AFLOW
    prototype matcher, elemental references).
    """
    name = 'pymatgen.analysis.prototypes'
    if name in sys.modules:
        return sys.modules[name]
    import monty.serialization

    read = monty.serialization.loadfn

    def deferred(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path).endswith('aflow_prototypes.json.gz'):
            return _DeferredLibrary(lambda: read(path, *args, **kwargs))
        return read(path, *args, **kwargs)

    monty.serialization.loadfn = deferred  # the module binds loadfn when it is imported, under the import lock
    try:
        import pymatgen.analysis.prototypes as prototypes
    finally:
        monty.serialization.loadfn = read
    return prototypes


_LABEL_PATTERN = re.compile(r'^(?P<formula>[A-Z][A-Z0-9]*)_(?P<pearson>[amothc][PSCIFABR]\d+)_(?P<spg>\d+)_(?P<wyckoffs>.+)$')
_ELEMENT_WYCKOFFS_PATTERN = re.compile(r'^(\d*[a-zA-Z])+$')
_COUNT_LETTER_PATTERN = re.compile(r'(\d*)([a-zA-Z])')
_MOYOPY_CENTERING = re.compile(r'_([amothc])S(\d+)_')


@dataclass(frozen=True)
class WyckoffPosition:
    """One Wyckoff position of a space group in its standard setting."""

    letter: str
    multiplicity: int
    """Sites of one orbit in the conventional cell."""
    dof: int
    """Free coordinates: 0 for a fixed position, which can hold one orbit at most."""

    @property
    def is_fixed(self) -> bool:
        return self.dof == 0


@dataclass(frozen=True)
class SpaceGroupInfo:
    """What the protostructure layer needs to know about one space group."""

    number: int
    symbol: str
    crystal_system: str
    positions: tuple[WyckoffPosition, ...]

    @cached_property
    def position_by_letter(self) -> dict[str, WyckoffPosition]:
        return {position.letter: position for position in self.positions}

    @property
    def centering(self) -> str:
        """Pearson centering letter, as pymatgen writes it (A-, B- and C-centred all as ``C``)."""
        first = self.symbol[0]
        return 'C' if first in 'ABCS' else first


def check_spacegroup(spacegroup: object) -> int:
    """Return ``spacegroup`` as an int, or raise :class:`ProtostructureError` naming the problem."""
    try:
        number = int(spacegroup)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ProtostructureError(f'space group {spacegroup!r} is not a number between 1 and 230') from None
    if str(number) != str(spacegroup).strip() and number != spacegroup:
        raise ProtostructureError(f'space group {spacegroup!r} is not a whole number between 1 and 230')
    if not 1 <= number <= NUM_SPACEGROUPS:
        raise ProtostructureError(f'space group {number} does not exist: international numbers run from 1 to 230')
    return number


@lru_cache(maxsize=None)
def spacegroup_info(spacegroup: int) -> SpaceGroupInfo:
    """Symbol, crystal system and Wyckoff positions of a space group, read once from PyXtal."""
    number = check_spacegroup(spacegroup)
    from pyxtal.symmetry import Group

    group = Group(number)
    positions = sorted(
        (WyckoffPosition(wp.letter, int(wp.multiplicity), int(wp.get_dof())) for wp in group.Wyckoff_positions),
        key=lambda position: LETTER_ORDER.index(position.letter),
    )
    return SpaceGroupInfo(number, group.symbol, group.lattice_type, tuple(positions))


def wyckoff_positions(spacegroup: int) -> tuple[WyckoffPosition, ...]:
    """The Wyckoff positions of ``spacegroup`` in the order a, b, c, ..."""
    return spacegroup_info(spacegroup).positions


@lru_cache(maxsize=None)
def equivalent_settings(spacegroup: int) -> tuple[np.ndarray, ...]:
    """Row orders of the Wyckoff table (a, b, ...) under the group's alternative origins and axes, identity first.

    ``order[i]`` is the position that position ``i`` becomes: a protostructure with ``x[order]`` as its element
    matrix is the same crystal (the same canonical label), so each is a valid way to write a training crystal.
    """
    from pyxtal.symmetry import Group

    letters = [position.letter for position in wyckoff_positions(spacegroup)]
    row = {letter: index for index, letter in enumerate(letters)}
    orders = {tuple(range(len(letters)))}
    for transformed in Group(check_spacegroup(spacegroup)).get_alternatives()['Transformed WP']:
        mapped = transformed.split()
        if sorted(mapped) == sorted(letters) and len(mapped) == len(letters):
            orders.add(tuple(row[letter] for letter in mapped))
    identity = tuple(range(len(letters)))
    return tuple(np.array(order, dtype=np.int64) for order in sorted(orders, key=lambda order: order != identity))


def _check_element(symbol: str) -> str:
    from pymatgen.core.periodic_table import Element

    if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
        raise ProtostructureError(f'unknown element {symbol!r}: use a symbol from the periodic table such as "Li" or "O"')
    return symbol


@dataclass(frozen=True)
class Protostructure:
    """A space group and the orbits each element occupies on its Wyckoff positions.

    ``sites`` holds ``(element, wyckoff_letter, orbits)`` triples; a position with free coordinates
    can hold several orbits of one element, a fixed one at most one orbit of one element. Build it
    with :meth:`from_occupation`, :meth:`from_label`, :meth:`from_structure` or
    :meth:`from_element_matrix`; all of them validate and normalise the order.
    """

    spacegroup: int
    sites: tuple[tuple[str, str, int], ...]

    def __post_init__(self) -> None:
        info = spacegroup_info(check_spacegroup(self.spacegroup))
        object.__setattr__(self, 'spacegroup', info.number)
        merged: dict[tuple[str, str], int] = defaultdict(int)
        for element, letter, orbits in self.sites:
            _check_element(element)
            if letter not in info.position_by_letter:
                letters = ''.join(position.letter for position in info.positions)
                raise ProtostructureError(
                    f'space group {info.number} ({info.symbol}) has no Wyckoff position {letter!r}; '
                    f'its letters are {letters}'
                )
            if int(orbits) != orbits or orbits < 0:
                raise ProtostructureError(f'{element} on {letter}: orbit count {orbits!r} is not a whole number >= 0')
            if orbits:
                merged[(element, letter)] += int(orbits)
        if not merged:
            raise ProtostructureError(f'protostructure in space group {info.number} has no atoms')
        occupied: dict[str, int] = defaultdict(int)
        for (_, letter), orbits in merged.items():
            occupied[letter] += orbits
        for letter, orbits in occupied.items():
            position = info.position_by_letter[letter]
            if position.is_fixed and orbits > 1:
                raise ProtostructureError(
                    f'Wyckoff position {position.multiplicity}{letter} of space group {info.number} has no free '
                    f'coordinates, so it holds one orbit at most, not {orbits}'
                )
        order = {letter: index for index, letter in enumerate(LETTER_ORDER)}
        sites = sorted(((el, letter, n) for (el, letter), n in merged.items()), key=lambda s: (s[0], order[s[1]]))
        object.__setattr__(self, 'sites', tuple(sites))

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def from_occupation(cls, spacegroup: int, occupation: Mapping[str, Mapping[str, int] | Iterable[str]]) -> Protostructure:
        """From ``{'O': {'e': 1}, ...}`` or ``{'O': ['e'], ...}`` (one orbit per listed letter)."""
        sites = []
        for element, letters in occupation.items():
            counts = letters if isinstance(letters, Mapping) else Counter(letters)
            sites.extend((element, letter, orbits) for letter, orbits in counts.items())
        return cls(spacegroup, tuple(sites))

    @classmethod
    def from_label(cls, label: str) -> Protostructure:
        """Parse a protostructure label; the formula and Pearson symbol in it must agree with its sites."""
        if not isinstance(label, str) or label.count(':') != 1:
            raise ProtostructureError(
                f'malformed protostructure label {label!r}: expected e.g. "A2BC4_cF56_227_c_b_e:Al-Mg-O"'
            )
        aflow_label, chemsys = label.strip().split(':')
        match = _LABEL_PATTERN.match(aflow_label)
        if match is None:
            raise ProtostructureError(
                f'malformed protostructure label {label!r}: expected FORMULA_PEARSON_SPACEGROUP_WYCKOFFS:CHEMSYS, '
                'e.g. "A2BC4_cF56_227_c_b_e:Al-Mg-O"'
            )
        elements = chemsys.split('-')
        element_wyckoffs = match['wyckoffs'].split('_')
        if len(elements) != len(element_wyckoffs):
            raise ProtostructureError(
                f'malformed protostructure label {label!r}: {len(elements)} elements in {chemsys!r} but '
                f'{len(element_wyckoffs)} groups of Wyckoff letters'
            )
        if elements != sorted(elements) or len(set(elements)) != len(elements):
            raise ProtostructureError(f'malformed protostructure label {label!r}: elements must be distinct and sorted')
        sites = []
        for element, wyckoffs in zip(elements, element_wyckoffs, strict=True):
            if not _ELEMENT_WYCKOFFS_PATTERN.match(wyckoffs):
                raise ProtostructureError(f'malformed Wyckoff letters {wyckoffs!r} for {element} in label {label!r}')
            sites.extend((element, letter, int(n or 1)) for n, letter in _COUNT_LETTER_PATTERN.findall(wyckoffs))
        protostructure = cls(check_spacegroup(match['spg']), tuple(sites))
        stated = f"{match['formula']}_{match['pearson']}"
        implied = f'{protostructure.prototype_formula}_{protostructure.pearson_symbol}'
        if stated != implied:
            raise ProtostructureError(
                f'inconsistent protostructure label {label!r}: its Wyckoff positions give {implied}, not {stated}'
            )
        return protostructure

    @classmethod
    def from_structure(cls, structure: Structure, symprec: float = 0.1) -> Protostructure:
        """Detect symmetry with spglib (pymatgen's labeller, the one the dataset's space groups used)."""
        return cls.from_label(structure_label(structure, symprec=symprec))

    @classmethod
    def from_element_matrix(cls, spacegroup: int, matrix: np.ndarray, elements: Iterable[str]) -> Protostructure:
        """Inverse of :meth:`element_matrix`."""
        elements = list(elements)
        positions = wyckoff_positions(spacegroup)
        matrix = np.asarray(matrix)
        if matrix.shape != (len(positions), len(elements)):
            raise ProtostructureError(
                f'element matrix of shape {matrix.shape} does not fit space group {spacegroup}: '
                f'expected ({len(positions)}, {len(elements)})'
            )
        rows, columns = np.nonzero(matrix)
        sites = tuple((elements[c], positions[r].letter, int(matrix[r, c])) for r, c in zip(rows, columns, strict=True))
        return cls(spacegroup, sites)

    # --- derived quantities -------------------------------------------------------------------------

    @property
    def info(self) -> SpaceGroupInfo:
        return spacegroup_info(self.spacegroup)

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(sorted({element for element, _, _ in self.sites}))

    @property
    def chemsys(self) -> str:
        return '-'.join(self.elements)

    @cached_property
    def element_counts(self) -> dict[str, int]:
        """Atoms of each element in the conventional cell."""
        counts: dict[str, int] = defaultdict(int)
        by_letter = self.info.position_by_letter
        for element, letter, orbits in self.sites:
            counts[element] += orbits * by_letter[letter].multiplicity
        return dict(counts)

    @property
    def composition(self) -> Composition:
        """Composition of the conventional cell."""
        from pymatgen.core import Composition

        return Composition(self.element_counts)

    @property
    def num_atoms(self) -> int:
        """Atoms in the conventional cell (the number in the Pearson symbol)."""
        return sum(self.element_counts.values())

    @property
    def free_parameters(self) -> int:
        """Free Wyckoff coordinates summed over all occupied orbits (lattice parameters excluded)."""
        by_letter = self.info.position_by_letter
        return sum(orbits * by_letter[letter].dof for _, letter, orbits in self.sites)

    @property
    def dof(self) -> int:
        """Degrees of freedom of a relaxation: free coordinates plus free lattice parameters."""
        return pymatgen_prototypes().count_crystal_dof(self.label)

    @property
    def pearson_symbol(self) -> str:
        info = self.info
        return f'{_CRYSTAL_FAMILY_LETTER[info.crystal_system]}{info.centering}{self.num_atoms}'

    @property
    def prototype_formula(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # pymatgen's own use of a deprecated gcd
            return pymatgen_prototypes().get_prototype_formula_from_composition(self.composition)

    @cached_property
    def label(self) -> str:
        """Canonical protostructure label: the same for every equivalent choice of origin."""
        order = {letter: index for index, letter in enumerate(LETTER_ORDER)}
        per_element = []
        for element in self.elements:
            own = sorted(((letter, n) for el, letter, n in self.sites if el == element), key=lambda s: order[s[0]])
            per_element.append(''.join(f'{n}{letter}' for letter, n in own))
        wyckoffs = pymatgen_prototypes().canonicalize_element_wyckoffs('_'.join(per_element), self.spacegroup)
        return f'{self.prototype_formula}_{self.pearson_symbol}_{self.spacegroup}_{wyckoffs}:{self.chemsys}'

    def canonical(self) -> Protostructure:
        """The equivalent protostructure whose letters are the canonical label's."""
        return Protostructure.from_label(self.label)

    def element_matrix(self, elements: Iterable[str] | None = None) -> np.ndarray:
        """Wyckoff element matrix: orbits of each element (columns) on each position (rows, a, b, ...).

        :param elements: column order; defaults to this protostructure's own elements.
        """
        elements = list(self.elements if elements is None else elements)
        column = {element: index for index, element in enumerate(elements)}
        missing = set(self.elements) - set(column)
        if missing:
            raise ProtostructureError(f'elements {sorted(missing)} of {self.label} are not among the columns {elements}')
        row = {position.letter: index for index, position in enumerate(self.info.positions)}
        matrix = np.zeros((len(row), len(elements)), dtype=np.int64)
        for element, letter, orbits in self.sites:
            matrix[row[letter], column[element]] = orbits
        return matrix

    def pyxtal_sites(self) -> tuple[list[str], list[int], list[list[str]]]:
        """Species, atoms per species and site strings (``'8c'``) as ``pyxtal.from_random`` takes them."""
        by_letter = self.info.position_by_letter
        species = list(self.elements)
        sites = [
            [f'{by_letter[letter].multiplicity}{letter}' for el, letter, n in self.sites if el == element for _ in range(n)]
            for element in species
        ]
        return species, [self.element_counts[element] for element in species], sites

    def __str__(self) -> str:
        return self.label


def structure_label(structure: Structure, symprec: float = 0.1, method: Literal['spglib', 'moyopy'] = 'spglib') -> str:
    """Canonical protostructure label of a structure; raises :class:`ProtostructureError` on failure.

    ``spglib`` is pymatgen's reference labeller (the dataset's space groups agree with it on every
    row); ``moyopy`` is about ten times faster and gives the same labels on exactly placed structures
    such as PyXtal's, so realization checks use it. Its Pearson symbols write C-centring as ``S``;
    they are rewritten to pymatgen's ``C`` so both methods give one label.
    """
    prototypes = pymatgen_prototypes()
    os.environ.setdefault('SPGLIB_WARNING', 'OFF')  # spglib's C layer prints every failed tolerance retry
    if len(structure) == 0:
        raise ProtostructureError('the structure has no atoms')
    if not structure.is_ordered:
        raise ProtostructureError(f'{structure.formula} is disordered (partial occupancies): protostructures need one element per site')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # pymatgen's own use of a deprecated gcd
            if method == 'moyopy':
                label = prototypes.get_protostructure_label_from_moyopy(structure, raise_errors=True, symprec=symprec)
                return _MOYOPY_CENTERING.sub(r'_\1C\2_', label, count=1)
            return prototypes.get_protostructure_label_from_spglib(structure, raise_errors=True, init_symprec=symprec)
    except (ValueError, RuntimeError) as exception:
        raise ProtostructureError(f'symmetry detection failed for {structure.composition.reduced_formula}: {exception}') from None


def label_against(structure: Structure, target: str) -> str:
    """The structure's label, checked against an expected ``target``: moyopy first (ten times faster), spglib where
    the two differ, since the labellers may pick different equivalent settings and spglib's is the reference."""
    found = structure_label(structure, method='moyopy')
    return found if found == target else structure_label(structure)
