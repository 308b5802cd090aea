"""The last reverse step under conditions on the whole composition: perturb-and-MAP over the step's distribution.

Each step of a chain draws every variable by the Gumbel-max trick: the argmax of its log-probabilities plus Gumbel
noise. Conditions on single variables (an element outside the system, an orbit too large) are masks; conditions on
the sum (every requested element present, the atom limit, charge balance) are not, and chains that broke them were
drawn again, 90 % of a Li-O request's chains under the composition filter (docs/discovery.md). Maximizing the *same*
perturbed scores jointly over the assignments whose composition obeys turns the last step into the likeliest valid
completion of the chain (Papandreou and Yuille's perturb-and-MAP): where the free draw obeys, it is that very draw;
where not, the chain changes the variables it was least sure of, and it need not be drawn again.

The maximum is a dynamic programme over the composition (atoms of each requested element): variables are added one
at a time, and per composition only the best partial assignment is kept, at most :data:`BEAM` of them, exact for
binaries within 60 atoms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ['BEAM', 'constrained_argmax']

BEAM = 4096
"""Partial compositions kept per variable: a binary within 60 atoms has at most 1,891, so its maximum is exact."""


def constrained_argmax(
    scores_fixed: np.ndarray,
    scores_count: np.ndarray,
    multiplicity: np.ndarray,
    elements: Sequence[int],
    max_atoms: int,
    accept: Callable[[tuple[int, ...]], bool],
) -> tuple[np.ndarray, np.ndarray] | None:
    """``x_fixed`` (N,) and ``x_count`` (N, V) of the highest summed score whose composition ``accept`` takes.

    :param scores_fixed: (N, V + 1) perturbed log-probabilities of each position's class, ``-inf`` where not allowed.
    :param scores_count: (N, V, K + 1) the same for each position's count of each element.
    :param multiplicity: (N,) atoms one orbit of each position holds.
    :param elements: vocabulary indices of the requested elements; the counts of all others must be masked to 0.
    :param accept: whether atoms per requested element (in the order of ``elements``) make a valid composition; the
        atom limit is enforced on the way.
    :returns: ``None`` when no composition within the beam is accepted.
    """
    column = {element: index for index, element in enumerate(elements)}
    width = len(elements)
    variables = []  # (kind, position, element or None, option classes, option scores, (O, width) atom deltas)
    for position, row in enumerate(scores_fixed):
        classes = np.flatnonzero(np.isfinite(row))
        if classes.tolist() == [0]:
            continue  # no orbit, and no choice: a free position's class, padding
        deltas = np.zeros((len(classes), width), dtype=np.int64)
        for option, cls in enumerate(classes):
            if cls:
                deltas[option, column[cls - 1]] = multiplicity[position]
        variables.append(('fixed', position, None, classes, row[classes], deltas))
    for position in range(scores_count.shape[0]):
        for element in elements:
            row = scores_count[position, element]
            counts = np.flatnonzero(np.isfinite(row))
            if counts.tolist() == [0]:
                continue
            deltas = np.zeros((len(counts), width), dtype=np.int64)
            deltas[:, column[element]] = counts * multiplicity[position]
            variables.append(('count', position, element, counts, row[counts], deltas))

    radix = (max_atoms + 1) ** np.arange(width, dtype=np.int64)
    compositions = np.zeros((1, width), dtype=np.int64)
    totals = np.zeros(1)
    trail = []  # per variable: (parent state, option) of each kept state
    for *_, option_scores, deltas in variables:
        options = len(option_scores)
        candidates = (compositions[:, None, :] + deltas[None, :, :]).reshape(-1, width)
        candidate_totals = (totals[:, None] + option_scores[None, :]).reshape(-1)
        within = np.flatnonzero(candidates.sum(axis=1) <= max_atoms)
        keys = candidates[within] @ radix
        by_key = within[np.lexsort((-candidate_totals[within], keys))]  # per composition, the best first
        sorted_keys = candidates[by_key] @ radix
        best = by_key[np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]] if len(by_key) else by_key
        if len(best) > BEAM:
            best = best[np.argsort(-candidate_totals[best], kind='stable')[:BEAM]]
        if not len(best):
            return None
        compositions, totals = candidates[best], candidate_totals[best]
        trail.append((best // options, best % options))

    for state in np.argsort(-totals, kind='stable'):
        if not accept(tuple(int(n) for n in compositions[state])):
            continue
        x_fixed = np.zeros(scores_fixed.shape[0], dtype=np.int64)
        x_count = np.zeros(scores_count.shape[:2], dtype=np.int64)
        for (kind, position, element, classes, *_), (parents, chosen) in zip(
            reversed(variables), reversed(trail), strict=True
        ):
            value = int(classes[chosen[state]])
            if kind == 'fixed':
                x_fixed[position] = value
            else:
                x_count[position, element] = value
            state = parents[state]
        return x_fixed, x_count
    return None
