"""Protostructure -> 3D structure, from a real crystal's geometry or PyXtal's, keeping only candidates whose symmetry
comes out as asked.

Given a template (a training crystal of the same prototype, :mod:`.templates`), its geometry with the new elements
is the candidate. Otherwise PyXtal places atoms on the requested Wyckoff sites with random free coordinates and a
random lattice; with ``scale_volume`` (the "predicted cell") the lattice takes the shape of a random training crystal of
the same space group (:mod:`.lattices`) at the fitted atomic volumes of :mod:`.templates`, PyXtal's own random lattice
(rescaled to those volumes) once atoms could not be placed in one. A candidate can
still come out with higher symmetry (a free coordinate landing on a special value) or with atoms too close (far below
the sum of their covalent radii: :func:`.templates.bond_problem`), so each candidate's protostructure is detected
again and compared with the request; up to ``attempts`` candidates are drawn. Everything is seeded: the same
protostructure and seed give the same structure.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .exceptions import ProtostructureError
from .lattices import draw_lattice
from .symmetry import Protostructure, label_against
from .templates import BOND_FACTOR, bond_problem, fitted_volume, predicted_volume, substitute

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice
    from pyxtal.tolerance import Tol_matrix

    from .templates import Template

__all__ = ['RealizationResult', 'realize', 'realize_many']

DEFAULT_ATTEMPTS = 100
DEFAULT_MIN_DISTANCE = 0.5
"""Ångström: shorter interatomic distances mean overlapping atoms, whatever the elements."""
MAX_PLACEMENT_FAILURES = 3
"""PyXtal only gives up on a placement after ~2 s of internal retries; three in a row mean the site set does not fit."""
FIXED_MISMATCHES = 3
"""A protostructure without free coordinates is the same arrangement in every candidate, only the lattice differs: once
it has come out as the same other label this many times (fixed sites that together make a smaller cell, as
A2B_hP6_194_cd_a:Er-Ni always makes AlB2-type A2B_hP3_191_c_b), the remaining attempts would too. Three, not one, so that
a random lattice that happens to look more symmetric does not end it."""
PYXTAL_TRIES = 10
"""PyXtal's own retries of a placement (its default); in a given lattice one try: every retry would use the same
lattice, and a failing one costs ~5 s."""
REAL_SHAPE_FAILED = "PyXtal could not place the atoms in a real crystal's lattice shape (then in its own)"
PYXTAL_ATOMIC_FACTOR = 0.5
"""PyXtal's ``atomic`` tolerances are this times the summed covalent radii (``Tol_matrix``): looser than the bond
check's :data:`~.templates.BOND_FACTOR`."""


@dataclass
class RealizationResult:
    """Outcome of realizing one protostructure: a structure, or the reason there is none."""

    protostructure: Protostructure
    seed: int | None
    structure: Structure | None = None
    attempts: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    """How many candidates were rejected, by cause."""
    reason: str | None = None
    """Why realization failed; ``None`` on success."""
    template: str | None = None
    """Material id of the training crystal whose geometry the structure has; ``None``: PyXtal's."""

    @property
    def ok(self) -> bool:
        return self.structure is not None


def realize(
    protostructure: Protostructure | str,
    attempts: int = DEFAULT_ATTEMPTS,
    seed: int | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    template: Template | None = None,
    scale_volume: bool = False,
    real_shapes: bool = False,
) -> RealizationResult:
    """Realize a protostructure (or label) as a structure whose protostructure is the requested one.

    :param attempts: candidates drawn at most.
    :param seed: seeds PyXtal's random lattice and coordinates; ``None`` draws fresh entropy.
    :param min_distance: reject candidates with two atoms closer than this, in Å.
    :param template: a training crystal of the same prototype whose geometry is tried first; PyXtal draws only if
        it fails (the reason is among the rejections).
    :param scale_volume: the predicted cell: PyXtal's random lattice rescaled to the predicted volume
        (``templates.predicted_volume``).
    :param real_shapes: with ``scale_volume``, PyXtal places atoms in the lattice shape of a random training crystal
        of the group at the fitted volume (:func:`.lattices.draw_lattice`); where it cannot (counted among the
        rejections), in its own lattice for that and every later attempt. Off by default: measured on held-out
        crystals it matched no more of them, relaxed in no fewer steps and took 2-4x the time (docs/realization.md).
    """
    if isinstance(protostructure, str):
        protostructure = Protostructure.from_label(protostructure)
    if attempts < 1:
        raise ProtostructureError(f'attempts must be at least 1, not {attempts}')
    target = protostructure.label
    rng = np.random.default_rng(seed)
    tolerances = _bond_tolerances()  # PyXtal would rebuild its table for every candidate
    result = RealizationResult(protostructure, seed)
    rejections: Counter[str] = Counter()
    if template is not None:
        try:
            candidate = substitute(protostructure, template)
            problem = bond_problem(candidate)
        except ProtostructureError as error:
            problem = str(error)
        if problem is None:
            result.structure, result.template, result.attempts = candidate, template.material_id, 1
            return result
        rejections[f'template {template.material_id}: {problem}'] += 1
    placement_failures = 0
    shapes = scale_volume and real_shapes
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        lattice = _real_lattice(protostructure, rng) if shapes else None
        crystal = _place(protostructure, lattice, rng, tolerances)
        if crystal is None and lattice is not None:
            # A failed placement in a given lattice costs ~5 s and mostly means the atoms are too crowded at the
            # fitted volume, which the next shape will not cure: PyXtal's own lattices from here on.
            rejections[REAL_SHAPE_FAILED] += 1
            shapes = False
            crystal = _place(protostructure, None, rng, tolerances)
        if crystal is None:
            rejections['PyXtal could not place the atoms'] += 1
            placement_failures += 1
            if placement_failures >= MAX_PLACEMENT_FAILURES:
                break
            continue
        placement_failures = 0
        candidate = _predicted_cell(crystal.to_pymatgen()) if scale_volume else crystal.to_pymatgen()
        if not candidate.is_valid(tol=min_distance):
            rejections[f'atoms closer than {min_distance} Å'] += 1
            continue
        if bond_problem(candidate) is not None:
            rejections['atoms far closer than their covalent radii'] += 1
            continue
        try:
            found = label_against(candidate, target)
        except ProtostructureError:
            rejections['symmetry detection failed'] += 1
            continue
        if found != target:
            rejections[f'came out as {found}'] += 1
            if protostructure.free_parameters == 0 and rejections[f'came out as {found}'] >= FIXED_MISMATCHES:
                break
            continue
        result.structure = candidate
        break
    result.rejections = dict(rejections)
    if result.structure is None:
        causes = '; '.join(f'{count}x {cause}' for cause, count in rejections.most_common(3))
        tries = f'{result.attempts} attempt' + ('s' if result.attempts != 1 else '')
        result.reason = f'no candidate in {tries} matched {target} ({causes})'
    return result


def _bond_tolerances() -> Tol_matrix:
    """PyXtal's closest distances set to the bond check's (:data:`~.templates.BOND_FACTOR` of the summed covalent
    radii), so that a placement PyXtal returns is not one :func:`~.templates.bond_problem` rejects.

    With PyXtal's own, looser distances, crowded sites (seven atoms on the lines of Amm2's 2a) were placed again and
    again between the two bounds, each placement seconds of PyXtal's retries, and every one rejected: 100 attempts for
    each of two candidates took 17 core-minutes of one benchmark run. Now PyXtal fails to place them, and three
    failures in a row end the realization (:data:`MAX_PLACEMENT_FAILURES`).
    """
    from pyxtal.tolerance import Tol_matrix

    return Tol_matrix(prototype='atomic', factor=BOND_FACTOR / PYXTAL_ATOMIC_FACTOR)


def _real_lattice(protostructure: Protostructure, rng: np.random.Generator) -> Lattice | None:
    """A real crystal's lattice shape for the protostructure's group at its atoms' fitted volume; ``None`` where an
    element has no fitted volume or PyXtal rejects the volume (PyXtal's own lattice then)."""
    from pyxtal.msg import VolumeError

    species, num_ions, _ = protostructure.pyxtal_sites()
    volume = fitted_volume(element for element, count in zip(species, num_ions, strict=True) for _ in range(count))
    try:
        return None if volume is None else draw_lattice(protostructure.spacegroup, volume, rng)
    except VolumeError:  # PyXtal's Lattice draws a random cell of the volume first, and gives up on tiny ones
        return None


def _place(protostructure: Protostructure, lattice: Lattice | None, rng: np.random.Generator,
           tolerances: Tol_matrix) -> pyxtal | None:
    """PyXtal's random placement of the protostructure's atoms in ``lattice`` (its own random one if ``None``);
    ``None`` where it gives up."""
    from pyxtal import pyxtal

    species, num_ions, sites = protostructure.pyxtal_sites()
    crystal = pyxtal()
    try:
        crystal.from_random(3, protostructure.spacegroup, species, num_ions, sites=sites, random_state=rng,
                            tm=tolerances, lattice=lattice, max_count=PYXTAL_TRIES if lattice is None else 1)
    except RuntimeError:
        return None
    return crystal


def _predicted_cell(candidate: Structure) -> Structure:
    """PyXtal's draw at the predicted volume, unless shrinking it to that squeezes atoms together: a random
    arrangement often has a close pair that PyXtal's looser cell still tolerates, and the draw need not be wasted."""
    volume = predicted_volume(candidate)
    if volume is None:
        return candidate
    scaled = candidate.copy()
    scaled.scale_lattice(volume)
    return scaled if volume >= candidate.volume or bond_problem(scaled) is None else candidate


def _realize_job(job: tuple[str, int, int, float, Template | None, bool]) -> RealizationResult:
    label, attempts, seed, min_distance, template, scale_volume = job
    return realize(label, attempts=attempts, seed=seed, min_distance=min_distance, template=template,
                   scale_volume=scale_volume)


def realize_many(
    protostructures: Sequence[Protostructure | str],
    attempts: int = DEFAULT_ATTEMPTS,
    seed: int = 0,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    processes: int | None = None,
    progress: bool = True,
    templates: Sequence[Template | None] | None = None,
    scale_volume: bool = False,
) -> list[RealizationResult]:
    """Realize many protostructures on all cores, results in input order.

    Each entry gets its own seed, spawned from ``seed`` for its position in the list, so a result does not depend on
    the number of processes; the same protostructure at another position draws another structure.

    :param templates: per protostructure, a template to try first (or ``None``); see :func:`realize`.
    """
    from tqdm.auto import tqdm

    labels = [p.label if isinstance(p, Protostructure) else Protostructure.from_label(p).label for p in protostructures]
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(len(labels))]
    templates = list(templates) if templates is not None else [None] * len(labels)
    jobs = [(label, attempts, item_seed, min_distance, template, scale_volume)
            for label, item_seed, template in zip(labels, seeds, templates, strict=True)]
    processes = min(processes or os.cpu_count() or 1, len(jobs)) or 1
    bar = tqdm(total=len(jobs), desc='realize', unit='structure', disable=not progress)
    if processes == 1:
        results = []
        for job in jobs:
            results.append(_realize_job(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            results = []
            for outcome in pool.map(_realize_job, jobs, chunksize=max(1, len(jobs) // (4 * processes))):
                results.append(outcome)
                bar.update()
    bar.close()
    return results
