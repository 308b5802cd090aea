"""Choosing free parameters instead of leaving them to chance.

A protostructure fixes the space group and the occupied Wyckoff positions, but not the free coordinates or the
lattice; one random realization can land far from the real arrangement (the paper's main limitation, e.g. the
spinel oxygen parameter). Here K realizations are drawn, each is scored by a single-point energy or by a short
symmetry-preserving pre-relaxation, and only the lowest-energy one goes on to the full relaxation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .relax import STAGED, RelaxSettings, evaluate_structures, relax_all

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from .potentials import LoadedPotential
    from .symmetry import Protostructure
    from .templates import TemplateLibrary

__all__ = ['Choice', 'choose_among', 'choose_realizations']

PRERELAX = RelaxSettings(
    fmax=0.2, steps=30, fix_symmetry=True, bfgs_alpha=STAGED.bfgs_alpha, cell_stiffness=STAGED.cell_stiffness
)
"""A short pre-relaxation: positions and cell under FixSymmetry, loose forces, few steps; BFGS's first guess and the
cell's scaling of the staged protocol, measured there (docs/relaxation.md)."""


@dataclass
class Choice:
    """The chosen starting structure of one protostructure, with every candidate's score (eV/atom, ``None``: failed),
    the pre-relaxation steps it cost (0 where scored by a single-point energy), and which candidate it was
    (``chosen``, a position among the candidates). A single candidate is taken unscored: ``chosen`` 0, no scores."""

    protostructure: Protostructure | None = None
    structure: Structure | None = None
    scores: list[float | None] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    reason: str | None = None
    chosen: int | None = None


def choose_among(
    groups: Sequence[Sequence[Structure]],
    potential: LoadedPotential,
    prerelax: RelaxSettings | None = PRERELAX,
    workers: int = 1,
    cores: int | None = None,
) -> list[Choice]:
    """The lowest-energy structure of each group of candidates, after a short pre-relaxation of all of them
    (``prerelax``, one structure per model call on ``workers`` processes sharing ``cores`` as ``relax_all`` does;
    ``None``: batched single-point energies). The chosen structure is the pre-relaxed one. A group of one has nothing
    to choose: its structure is taken as it is, unscored, as the workflow relaxes a structure without alternatives."""
    pool = [(i, structure) for i, group in enumerate(groups) if len(group) > 1 for structure in group]
    structures = [structure for _, structure in pool]
    if prerelax is None:
        scores = evaluate_structures(structures, potential)
        steps = [0] * len(structures)
    else:
        outcomes = relax_all(structures, potential, prerelax, workers=workers, cores=cores).outcomes if structures else []
        scores = [o.energy_per_atom for o in outcomes]
        steps = [o.steps for o in outcomes]
        structures = [o.structure if o.structure is not None else s for o, s in zip(outcomes, structures)]
    choices = [Choice(structure=group[0], chosen=0) if len(group) == 1 else Choice() for group in groups]
    best: dict[int, float] = {}
    for (i, _), structure, score, taken in zip(pool, structures, scores, steps):
        if score is not None and score < best.get(i, float('inf')):
            best[i] = score
            choices[i].structure, choices[i].chosen = structure, len(choices[i].scores)
        choices[i].scores.append(score)
        choices[i].steps.append(taken)
    for choice in choices:
        if choice.structure is None:
            choice.reason = f'no candidate could be evaluated by the {potential.name} potential'
    return choices


def choose_realizations(
    protostructures: Sequence[Protostructure],
    potential: LoadedPotential,
    candidates: int = 8,
    seed: int = 0,
    prerelax: RelaxSettings | None = PRERELAX,
    attempts: int = 100,
    workers: int = 1,
    cores: int | None = None,
    templates: TemplateLibrary | None = None,
) -> list[Choice]:
    """Realize ``candidates`` structures per protostructure and keep the lowest-energy one.

    All candidates of all protostructures are pre-relaxed together (:func:`choose_among`).

    :param candidates: K, realizations per protostructure; 1 reproduces a single random realization.
    :param seed: candidate ``k`` of protostructure ``i`` uses seed ``seed + i * candidates + k``.
    :param prerelax: settings of the pre-relaxation; ``None`` scores by single-point energy instead.
    :param attempts: realization attempts per candidate.
    :param workers: processes of the pre-relaxation.
    :param cores: the cores they share (default: all this process may run on).
    :param templates: a protostructure whose prototype has a template is realized once, from the most similar
        (K pre-relaxed templates took 1.6-1.9x the atom-steps for -5 to +14 % near-hull structures: docs/realization.md),
        the others K times by PyXtal (volume predicted); ``None``: PyXtal always. Where ``realize`` gives up on one candidate
        before its ``attempts`` (PyXtal could not seat the atoms three times in a row, or fixed sites came out as the
        same smaller cell three times), the protostructure's other candidates are not drawn: no seed changes either,
        and a give-up on crowded sites costs up to a minute and a half of PyXtal's retries (docs/realization.md).
    """
    from .realize import realize

    groups: list[list[Structure]] = []
    reasons: dict[int, str] = {}
    for i, protostructure in enumerate(protostructures):
        groups.append([])
        own = templates.templates_for(protostructure, 1) if templates is not None else []
        for k in range(1 if own else candidates):
            result = realize(protostructure, attempts=attempts, seed=seed + i * candidates + k,
                             template=own[0] if own else None, scale_volume=templates is not None)
            if result.ok:
                groups[i].append(result.structure)
                continue
            reasons[i] = result.reason or 'realization failed'
            if result.attempts < attempts:  # realize gave up early, for a reason no other seed changes
                break
    choices = choose_among(groups, potential, prerelax, workers, cores)
    for i, (protostructure, choice) in enumerate(zip(protostructures, choices)):
        choice.protostructure = protostructure
        if not groups[i]:
            choice.reason = reasons[i]
    return choices
