"""Which space groups a phase-diagram scan samples: chosen for the chemistry, or the paper's fixed list.

The paper scans the 20 space groups most frequent in the training data, whatever the chemical system; spinel
MgAl2O4 (Fd-3m, 227, the 21st) is then never requested for Al-Mg-O. The ``chemistry`` choice weighs the space
groups of training-split crystals with as many elements as the request by how similar their elements are:
each crystal counts ``exp(-d / scale)``, where ``d`` is the chemical distance of its elements to the requested
ones (summed differences of Pettifor's Mendeleev numbers, paired in sorted order, which is the pairing of least
distance), and a group scores the sum over its crystals. Crystals of the same elements count 1, chemically far ones
next to nothing; a large ``scale`` tends to the frequencies of the arity. The crystals are the shipped template
library's (:func:`~aiida_wyckoffdiff.templates.shipped_templates`), so the choice needs no data folder.
docs/spacegroups.md measures both choices on held-out systems.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    'CHEMISTRY_SCALE',
    'SpacegroupAllocation',
    'allocate_samples',
    'SpacegroupChoice',
    'SpacegroupMethod',
    'choose_spacegroups',
    'chemistry_spacegroups',
    'top_spacegroups',
]

CHEMISTRY_SCALE = 2.0
"""Mendeleev-number distance at which a crystal's weight falls to 1/e: the scale of best recall of the validation
split's (chemical system, space group) pairs (docs/spacegroups.md)."""
NEAREST_SHOWN = 3
"""Training crystals named per chosen group in the report: the nearest, which are why the group was chosen."""
ALLOCATION_WINDOW = 0.1
"""eV/atom: a relaxed structure counts as near the target within this (at target 0, the hit threshold)."""
ALLOCATION_PRIOR = 2.0
"""Pseudo-samples of the overall rate each group's rate starts from, so a group with one lucky sample does not take
the scan and a group never sampled gets the overall rate."""


class SpacegroupMethod(str, enum.Enum):
    """How a scan's space groups are chosen."""

    CHEMISTRY = 'chemistry'
    """Weighed by training crystals of the same arity and similar elements (this module's docstring)."""
    TOP20 = 'top20'
    """The most frequent groups of the training data, whatever the chemistry: the paper's scan."""


@dataclass(frozen=True)
class SpacegroupChoice:
    """The chosen groups, best first, and why: each group's score and its nearest training crystals."""

    method: SpacegroupMethod
    spacegroups: tuple[int, ...]
    scores: dict[int, float]
    """Summed weights of the group's crystals (``chemistry``), or its count of training crystals (``top20``)."""
    nearest: dict[int, list[tuple[str, float]]]
    """Per chosen group, its most similar training crystals as ``(label, distance)`` (``chemistry`` only)."""

    def as_report(self) -> dict:
        reason = {
            SpacegroupMethod.CHEMISTRY: 'space groups of training crystals with as many elements, each weighted '
                                        f'exp(-d / {CHEMISTRY_SCALE}) by the Mendeleev-number distance d of its '
                                        'elements to the requested ones',
            SpacegroupMethod.TOP20: 'the most frequent space groups of the training data, whatever the chemistry '
                                    "(the paper's scan)",
        }[self.method]
        return {
            'method': self.method.value,
            'reason': reason,
            'spacegroups': list(self.spacegroups),
            'scores': {str(group): round(self.scores[group], 4) for group in self.spacegroups},
            'nearest': {str(group): [[label, distance] for label, distance in crystals]
                        for group, crystals in self.nearest.items()},
        }


def _mendeleev_numbers(elements: Iterable[str]) -> tuple[float, ...]:
    from pymatgen.core import Element

    return tuple(sorted(float(Element(element).mendeleev_no) for element in elements))


@dataclass(frozen=True)
class _Crystals:
    """Training crystals of one arity: labels, space groups ``(M,)`` and sorted Mendeleev numbers ``(M, arity)``."""

    labels: tuple[str, ...]
    groups: np.ndarray
    numbers: np.ndarray


@functools.cache
def _training_crystals(arity: int) -> _Crystals:
    """Every training crystal with ``arity`` elements, from the shipped template library."""
    from .templates import shipped_templates

    labels = sorted(template.label for templates in shipped_templates().by_prototype.values()
                    for template in templates if len(template.elements) == arity)
    groups = np.array([int(label.split('_')[2]) for label in labels], dtype=np.int64)
    numbers = np.array([_mendeleev_numbers(label.split(':', 1)[1].split('-')) for label in labels]).reshape(-1, arity)
    return _Crystals(tuple(labels), groups, numbers)


def chemistry_spacegroups(elements: Sequence[str], count: int, scale: float = CHEMISTRY_SCALE) -> SpacegroupChoice:
    """The ``count`` groups of highest summed weight ``exp(-d / scale)`` over training crystals of ``len(elements)``
    elements (ties by group number); fewer where fewer groups have such crystals."""
    crystals = _training_crystals(len(elements))
    distances = np.abs(crystals.numbers - np.array(_mendeleev_numbers(elements))).sum(axis=1)  # (M,)
    totals = np.bincount(crystals.groups, weights=np.exp(-distances / scale), minlength=231)
    present = np.unique(crystals.groups)
    scores = {int(group): float(totals[group]) for group in present}
    chosen = tuple(sorted(scores, key=lambda group: (-scores[group], group))[:count])
    nearest = {}
    for group in chosen:
        members = np.flatnonzero(crystals.groups == group)
        closest = members[np.lexsort((members, distances[members]))[:NEAREST_SHOWN]]
        nearest[group] = [(crystals.labels[i], float(distances[i])) for i in closest]
    return SpacegroupChoice(SpacegroupMethod.CHEMISTRY, chosen, scores, nearest)


def top_spacegroups(count: int) -> SpacegroupChoice:
    """The paper's choice: the ``count`` most frequent groups of the training data."""
    from .data import training_spacegroup_counts

    counts = training_spacegroup_counts()
    chosen = tuple(list(counts)[:count])
    return SpacegroupChoice(SpacegroupMethod.TOP20, chosen, {group: float(counts[group]) for group in chosen}, {})


def choose_spacegroups(elements: Sequence[str], count: int, method: SpacegroupMethod | str) -> SpacegroupChoice:
    """The scan's groups for a chemical system by ``method``."""
    if SpacegroupMethod(method) is SpacegroupMethod.TOP20:
        return top_spacegroups(count)
    return chemistry_spacegroups(elements, count)


@dataclass(frozen=True)
class SpacegroupAllocation:
    """How many of a scan's samples each group gets, learned from earlier relaxations of the same request."""

    spacegroups: tuple[int, ...]
    """One group per sample slot (a ``GenerationRequest`` cycles them), grouped, in the scan's order."""
    counts: dict[int, int]
    rates: dict[int, float]
    """Each group's smoothed share of earlier relaxations that ended near the target."""
    seen: dict[int, tuple[int, int]]
    """Per group, (relaxations near the target, relaxations) it was learned from."""
    target: float

    def as_report(self) -> dict:
        return {
            'target': self.target,
            'window': ALLOCATION_WINDOW,
            'counts': {str(group): count for group, count in self.counts.items()},
            'rates': {str(group): round(rate, 4) for group, rate in self.rates.items()},
            'seen': {str(group): list(pair) for group, pair in self.seen.items()},
        }


def allocate_samples(
    spacegroups: Sequence[int], outcomes: Iterable[tuple[int, float]], num_samples: int, target: float = 0.0
) -> SpacegroupAllocation:
    """Share ``num_samples`` among ``spacegroups`` by how often earlier relaxations requested in each group ended
    within :data:`ALLOCATION_WINDOW` of the ``target`` e_above_hull (below the hull counts as 0).

    Across the groups of one chemical system, where a round's samples end is far more predictable than within a group
    (docs/rounds.md): the groups' median relaxed energies of two rounds agree with Spearman 0.55-0.84. Each group keeps
    one sample where there are enough, so a later round still learns about it; the rest go in proportion to the
    smoothed rates (the overall rate as :data:`ALLOCATION_PRIOR` pseudo-samples), by largest remainders.

    :param outcomes: ``(requested space group, relaxed e_above_hull)`` of earlier relaxations of this request;
        other groups are ignored.
    """
    groups = list(dict.fromkeys(int(group) for group in spacegroups))
    if not groups or num_samples < 1:
        raise ValueError(f'nothing to allocate: {num_samples} samples over the space groups {groups}')
    near = dict.fromkeys(groups, 0)
    seen = dict.fromkeys(groups, 0)
    for group, energy in outcomes:
        if group in seen:
            seen[group] += 1
            near[group] += abs(max(float(energy), 0.0) - target) <= ALLOCATION_WINDOW
    overall = (sum(near.values()) + 1) / (sum(seen.values()) + 2)
    rates = {g: (near[g] + ALLOCATION_PRIOR * overall) / (seen[g] + ALLOCATION_PRIOR) for g in groups}
    floor = 1 if num_samples >= len(groups) else 0
    share = np.array([rates[g] for g in groups])
    exact = (num_samples - floor * len(groups)) * share / share.sum()
    counts = np.floor(exact).astype(int) + floor
    for index in np.argsort(-(exact - np.floor(exact)), kind='stable')[: num_samples - counts.sum()]:
        counts[index] += 1
    allocated = {g: int(c) for g, c in zip(groups, counts, strict=True)}
    slots = tuple(g for g in groups for _ in range(allocated[g]))
    return SpacegroupAllocation(slots, allocated, rates, {g: (near[g], seen[g]) for g in groups}, target)
