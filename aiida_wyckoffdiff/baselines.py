"""What a materials scientist would do instead of the model: the baselines a generator has to beat.

- :func:`random_protostructures`: random search in protostructure space (the AIRSS / PyXtal random-search
  analogue). Per space group, the number of occupied orbits and the Wyckoff positions they sit on are drawn from
  the training split's own frequencies (:class:`WyckoffPrior`), the element of each orbit uniformly within the
  chemical system; the same hard constraints as the model (space group, chemical system, every element present,
  atom limit, a fixed position holds one orbit at most) are enforced by redrawing.
- :func:`substituted_structures`: data-mined ionic substitution (pymatgen ``structure_prediction``, with the
  substitution probabilities pymatgen ships) of training-split structures into the requested chemical system.
  It proposes real 3D structures, so its candidates skip realization.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .exceptions import ConditionError
from .symmetry import Protostructure, check_spacegroup, wyckoff_positions

if TYPE_CHECKING:
    import pandas as pd
    from pymatgen.core import Structure

__all__ = ['WyckoffPrior', 'random_protostructures', 'shipped_prior', 'substituted_structures', 'training_sources']

PRIOR_FILE = 'wyckoff_prior.json'
"""The training split's prior, shipped so that random search runs without the data (``scripts/build_wyckoff_prior.py``)."""


@dataclass(frozen=True)
class WyckoffPrior:
    """Per space group: how many orbits a crystal has, and how often each Wyckoff letter holds an orbit."""

    orbits: dict[int, Counter[int]] = field(default_factory=dict)
    letters: dict[int, Counter[str]] = field(default_factory=dict)

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> WyckoffPrior:
        """Count protostructure labels: per space group, crystals by number of orbits and orbits by letter."""
        orbits: dict[int, Counter[int]] = {}
        letters: dict[int, Counter[str]] = {}
        for label in labels:
            protostructure = Protostructure.from_label(label)
            group = protostructure.spacegroup
            orbits.setdefault(group, Counter())[sum(n for _, _, n in protostructure.sites)] += 1
            position_counts = letters.setdefault(group, Counter())
            for _, letter, n in protostructure.sites:
                position_counts[letter] += n
        return cls(orbits, letters)

    @classmethod
    def from_dataset(cls, frame: pd.DataFrame, split: str = 'train') -> WyckoffPrior:
        """Count the rows of one split of a ``load_dataset`` table."""
        return cls.from_labels(frame.loc[frame['split'] == split, 'label'])

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        """JSON-ready: ``{'orbits': {group: {count: rows}}, 'letters': {group: {letter: orbits}}}``."""
        return {name: {str(group): {str(key): count for key, count in sorted(counter.items())}
                       for group, counter in sorted(getattr(self, name).items())} for name in ('orbits', 'letters')}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, dict[str, int]]]) -> WyckoffPrior:
        return cls({int(g): Counter({int(k): n for k, n in c.items()}) for g, c in data['orbits'].items()},
                   {int(g): Counter(c) for g, c in data['letters'].items()})

    def draw(self, spacegroup: int, elements: Sequence[str], rng: np.random.Generator) -> Protostructure | None:
        """One random protostructure of ``spacegroup``, or ``None`` where the draw broke a fixed position's limit."""
        if not self.orbits:
            raise ConditionError('the prior is empty: build it from a dataset split that has crystals')
        if spacegroup in self.orbits:
            orbits, occupied = self.orbits[spacegroup], self.letters[spacegroup]
        else:  # a group the training split lacks: orbit counts pooled over all groups, every position alike
            orbits = sum(self.orbits.values(), Counter())
            occupied = Counter({p.letter: 1 for p in wyckoff_positions(spacegroup)})
        sizes, size_weights = zip(*sorted(orbits.items()), strict=True)
        letters, letter_weights = zip(*sorted(occupied.items()), strict=True)
        size = int(rng.choice(sizes, p=np.array(size_weights) / sum(size_weights)))
        chosen = rng.choice(letters, size=size, p=np.array(letter_weights) / sum(letter_weights))
        fixed = {p.letter for p in wyckoff_positions(spacegroup) if p.is_fixed}
        taken = Counter(str(letter) for letter in chosen)
        if any(taken[letter] > 1 for letter in fixed):
            return None
        sites = Counter((str(elements[rng.integers(len(elements))]), str(letter)) for letter in chosen)
        return Protostructure(spacegroup, tuple((element, letter, n) for (element, letter), n in sites.items()))


@functools.cache
def shipped_prior() -> WyckoffPrior:
    """The training split's prior as shipped in the package (its file records the dataset hash it came from)."""
    from importlib import resources

    document = json.loads(resources.files('aiida_wyckoffdiff').joinpath('resources', PRIOR_FILE).read_text())
    return WyckoffPrior.from_dict(document['prior'])


def training_sources(
    num_elements: int, data_dir: str | Path | None = None, max_sites: int = 20, max_e_above_hull: float = 0.05
) -> list[tuple[str, int, Structure]]:
    """Training-split crystals with ``num_elements`` elements, at most ``max_sites`` sites and at most
    ``max_e_above_hull`` eV/atom above MP's hull, as ``(material_id, space group, structure)``: the sources of
    ionic substitution. Read from the shared MP data (``data.find_data_dir``)."""
    import pandas as pd
    from pymatgen.core import Structure

    from .data import MAIN_FILE, find_data_dir, split_of

    columns = ['material_id', 'elements', 'nsites', 'spacegroup', 'e_above_hull', 'cif']
    table = pd.read_csv(find_data_dir(data_dir) / MAIN_FILE, usecols=columns)
    chosen = table[(table['elements'].str.split().str.len() == num_elements) & (table['nsites'] <= max_sites)
                   & (table['e_above_hull'] <= max_e_above_hull) & (table['material_id'].map(split_of) == 'train')]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return [(mid, int(group), Structure.from_str(cif, fmt='cif'))
                for mid, group, cif in zip(chosen['material_id'], chosen['spacegroup'], chosen['cif'], strict=True)]


def random_protostructures(
    prior: WyckoffPrior,
    chemsys: Sequence[str],
    spacegroups: Sequence[int],
    num_samples: int,
    seed: int = 0,
    max_atoms: int = 60,
    max_draws: int = 1000,
    known_prototypes: float = 0.0,
) -> list[Protostructure]:
    """``num_samples`` random protostructures cycling over ``spacegroups``, each obeying the same constraints as
    the model's samples; a slot that still breaks them after ``max_draws`` draws is left out.

    ``known_prototypes``: the share of each group's samples drawn uniformly, without replacement, from the training
    arrangements with these elements (``TemplateLibrary.arrangements``), the model's library choice without its
    score; slots the library cannot fill are drawn from the prior.
    """
    from .templates import shipped_templates

    elements = tuple(sorted(set(chemsys)))
    rng = np.random.default_rng(seed)
    groups = [check_spacegroup(spacegroups[slot % len(spacegroups)]) for slot in range(num_samples)]
    chosen: dict[int, list[Protostructure]] = {}
    for group, slots in Counter(groups).items() if known_prototypes else ():
        arrangements = shipped_templates().arrangements(elements, group, max_atoms)
        share = min(len(arrangements), math.ceil(known_prototypes * slots))
        chosen[group] = [arrangements[i] for i in rng.choice(len(arrangements), share, replace=False)]
    samples = []
    for group in groups:
        if chosen.get(group):
            samples.append(chosen[group].pop())
            continue
        for _ in range(max_draws):
            candidate = prior.draw(group, elements, rng)
            if candidate is not None and candidate.num_atoms <= max_atoms and set(candidate.elements) == set(elements):
                samples.append(candidate)
                break
    return samples


def _target_species(chemsys: Sequence[str]) -> list[list[str]]:
    """Every choice of one common oxidation state per element that can be charge balanced (signs of both kinds)."""
    from pymatgen.core import Element, Species

    states = [Element(element).common_oxidation_states for element in sorted(chemsys)]
    choices = []
    for combination in itertools.product(*states):
        if min(combination) < 0 < max(combination):
            choices.append([str(Species(e, s)) for e, s in zip(sorted(chemsys), combination, strict=True)])
    return choices


def substituted_structures(
    sources: Iterable[Structure],
    chemsys: Sequence[str],
    threshold: float = 1e-4,
    max_structures: int | None = None,
) -> list[Structure]:
    """Structures of ``chemsys`` proposed by ionic substitution into ``sources``, most probable first.

    :param sources: structures with as many elements as ``chemsys`` (e.g. training-split crystals); their oxidation
        states are guessed here, and those pymatgen cannot decorate are skipped.
    :param threshold: the lowest substitution probability kept (pymatgen's ``Substitutor`` threshold).
    """
    from pymatgen.analysis.structure_prediction.substitutor import Substitutor
    from pymatgen.analysis.structure_matcher import StructureMatcher

    decorated = []
    for index, structure in enumerate(sources):
        if len(structure.composition) != len(set(chemsys)):
            continue
        structure = structure.copy()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                structure.add_oxidation_state_by_guess(max_sites=-1)
            except ValueError:
                continue
        if all(getattr(site.specie, 'oxi_state', 0) for site in structure):
            decorated.append({'structure': structure, 'id': index})
    substitutor = Substitutor(threshold=threshold)
    proposals = []
    for species in _target_species(chemsys):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                proposals += substitutor.pred_from_structures(species, decorated, remove_duplicates=True)
            except ValueError:  # a species the shipped probability table does not know: nothing to propose
                continue
    proposals.sort(key=lambda transformed: -transformed.other_parameters.get('proba', 0.0))
    distinct: list[Structure] = []
    matcher = StructureMatcher()
    for transformed in proposals:
        structure = transformed.final_structure.copy()
        structure.remove_oxidation_states()
        if not any(matcher.fit(structure, kept) for kept in distinct):
            distinct.append(structure)
        if max_structures is not None and len(distinct) >= max_structures:
            break
    return distinct
