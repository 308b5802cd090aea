"""Batched structural relaxation with one loaded potential.

All structures advance in lockstep: each round evaluates every unfinished structure in model batches, then each
ASE optimizer (FIRE or BFGS on a ``FrechetCellFilter``) takes one step. A structure that fails (an element the
potential lacks, overlapping atoms, NaN energies, an exploding or collapsing cell) ends with a reason in its own
``RelaxOutcome``; the rest of the batch carries on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .potentials import Evaluation, LoadedPotential

if TYPE_CHECKING:
    from ase import Atoms
    from ase.optimize.optimize import Optimizer
    from pymatgen.core import Structure

__all__ = ['OPTIMIZERS', 'RelaxOutcome', 'RelaxSettings', 'evaluate_structures', 'relax_structures', 'spacegroup_of']

OPTIMIZERS = ('FIRE', 'BFGS')


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax.

    :param optimizer: ``FIRE`` or ``BFGS``.
    :param fmax: force convergence criterion in eV/Å (the cell filter folds the stress into it).
    :param steps: optimizer steps at most; a structure still moving then ends unconverged, with its energy.
    :param relax_cell: relax the lattice too (``FrechetCellFilter``), not only the positions.
    :param fix_symmetry: symmetrize the start to its space group at ``symprec`` and keep that group (ASE
        ``FixSymmetry``) instead of an unconstrained relaxation.
    :param primitive: relax the primitive cell, which is up to 4x smaller for centred lattices.
    :param symprec: tolerance in Å for the space groups reported before and after, and for ``fix_symmetry``.
    :param min_distance: two atoms closer than this (Å) mean overlapping input or a collapsed relaxation.
    :param max_volume_ratio: a cell whose volume grows or shrinks by more than this factor has exploded.
    """

    optimizer: str = 'FIRE'
    fmax: float = 0.05
    steps: int = 300
    relax_cell: bool = True
    fix_symmetry: bool = False
    primitive: bool = True
    symprec: float = 0.1
    min_distance: float = 0.5
    max_volume_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f'optimizer must be one of {OPTIMIZERS}, not `{self.optimizer}`')


@dataclass
class RelaxOutcome:
    """What happened to one input structure; ``reason`` is ``None`` unless it failed.

    Energies are total (eV) and per atom (eV/atom) of the final structure, from ``potential`` with checkpoint hash
    ``checkpoint_sha256``. A structure that hit the step limit is not failed: ``converged`` is ``False`` and its
    last energy is kept.
    """

    index: int
    formula: str
    potential: str
    checkpoint_sha256: str
    converged: bool = False
    steps: int = 0
    energy: float | None = None
    energy_per_atom: float | None = None
    spacegroup_initial: int | None = None
    spacegroup_final: int | None = None
    structure: Structure | None = None
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the structure as pymatgen's dict."""
        return asdict(self) | {'structure': self.structure.as_dict() if self.structure is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelaxOutcome:
        """Inverse of :meth:`as_dict`; keys that are not fields (e.g. the CLI's per-input records) are ignored."""
        from pymatgen.core import Structure

        fields = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        structure = Structure.from_dict(fields['structure']) if fields.get('structure') else None
        return cls(**(fields | {'structure': structure}))


def spacegroup_of(structure: Structure, symprec: float = 0.1) -> int | None:
    """International space-group number, or ``None`` where the symmetry search fails (e.g. a collapsed cell)."""
    import moyopy
    from moyopy.interface import MoyoAdapter

    try:
        return moyopy.MoyoDataset(MoyoAdapter.from_structure(structure), symprec=symprec).number
    except Exception:  # noqa: BLE001 - moyopy raises its own RuntimeError variants for degenerate cells
        return None


def _min_distance(atoms: Atoms) -> float:
    if len(atoms) < 2:
        from pymatgen.io.ase import AseAtomsAdaptor

        lattice = AseAtomsAdaptor.get_structure(atoms).lattice
        return float(min(lattice.abc))
    distances = atoms.get_all_distances(mic=True)
    return float(distances[np.triu_indices(len(atoms), k=1)].min())


@dataclass
class _Job:
    outcome: RelaxOutcome
    atoms: Atoms
    volume: float
    optimizer: Optimizer | None = None
    evaluation: Evaluation | None = None
    trajectory: Any = None
    """An open ``ase.io.Trajectory`` that receives every evaluated frame, when one was asked for."""


def _start(index: int, structure: Structure, potential: LoadedPotential, settings: RelaxSettings) -> _Job:
    from ase.data import atomic_numbers
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    outcome = RelaxOutcome(index, structure.composition.reduced_formula, potential.name, potential.checkpoint_sha256)
    missing = sorted(
        e.symbol for e in structure.composition if atomic_numbers[e.symbol] not in potential.supported_numbers
    )
    if missing:
        outcome.reason = f'element(s) {", ".join(missing)} not covered by the {potential.name} potential'
    elif (distance := _min_distance(AseAtomsAdaptor.get_atoms(structure))) < settings.min_distance:
        outcome.reason = f'overlapping atoms: two atoms {distance:.2f} Å apart (< {settings.min_distance} Å)'
    else:
        outcome.spacegroup_initial = spacegroup_of(structure, settings.symprec)
        if settings.primitive and outcome.spacegroup_initial is not None:
            structure = SpacegroupAnalyzer(structure, symprec=settings.symprec).find_primitive() or structure
    atoms = AseAtomsAdaptor.get_atoms(structure)
    return _Job(outcome, atoms, atoms.get_volume())


def _attach_optimizer(job: _Job, settings: RelaxSettings) -> None:
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from ase.spacegroup.symmetrize import refine_symmetry

    if settings.fix_symmetry:
        # Symmetrize first: FixSymmetry only constrains the displacements, so noise present at the start would stay.
        refine_symmetry(job.atoms, symprec=settings.symprec)
        job.atoms.set_constraint(FixSymmetry(job.atoms, symprec=settings.symprec))
    target = FrechetCellFilter(job.atoms) if settings.relax_cell else job.atoms
    job.optimizer = {'FIRE': FIRE, 'BFGS': BFGS}[settings.optimizer](target, logfile=None)
    job.optimizer.fmax = settings.fmax  # ``run`` would set it; the lockstep loop calls ``step`` itself


def _evaluate_one(potential: LoadedPotential, atoms: Atoms) -> Evaluation | str:
    try:
        return potential.evaluate([atoms])[0]
    except Exception as exception:  # noqa: BLE001 - a model can raise anything; it becomes this structure's reason
        return f'{potential.name} evaluation failed: {type(exception).__name__}: {exception}'


def _evaluate_isolating_failures(potential: LoadedPotential, atoms_list: Sequence[Atoms]) -> list[Evaluation | str]:
    """Evaluate in model batches; a batch that raises is retried one by one, so only the bad structure fails."""
    results: list[Evaluation | str] = []
    for start in range(0, len(atoms_list), potential.batch_size):
        chunk = atoms_list[start : start + potential.batch_size]
        try:
            results.extend(potential.evaluate(chunk) if len(chunk) > 1 else [_evaluate_one(potential, chunk[0])])
        except Exception:  # noqa: BLE001 - isolated below
            results.extend(_evaluate_one(potential, atoms) for atoms in chunk)
    return results


def _check(job: _Job, result: Evaluation | str, settings: RelaxSettings) -> str | None:
    """Why this step's result cannot be trusted, or ``None``."""
    if isinstance(result, str):
        return result
    if not (math.isfinite(result.energy) and np.isfinite(result.forces).all() and np.isfinite(result.stress).all()):
        return f'non-finite energy, forces or stress after {job.outcome.steps} steps'
    ratio = job.atoms.get_volume() / job.volume
    if not 1 / settings.max_volume_ratio < ratio < settings.max_volume_ratio:
        return f'cell {"exploded" if ratio > 1 else "collapsed"}: volume changed {ratio:.2g}x'
    if (distance := _min_distance(job.atoms)) < settings.min_distance:
        return f'atoms collapsed: two atoms {distance:.2f} Å apart after {job.outcome.steps} steps'
    return None


def _finish(job: _Job, settings: RelaxSettings, converged: bool) -> None:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = job.atoms.copy()
    atoms.set_constraint()
    structure = AseAtomsAdaptor.get_structure(atoms)
    outcome = job.outcome
    outcome.converged = bool(converged)  # ASE returns numpy booleans, which JSON cannot write
    outcome.energy = float(job.evaluation.energy)
    outcome.energy_per_atom = outcome.energy / len(atoms)
    outcome.structure = structure
    outcome.spacegroup_final = spacegroup_of(structure, settings.symprec)


def relax_structures(
    structures: Sequence[Structure],
    potential: LoadedPotential,
    settings: RelaxSettings | None = None,
    on_finished: Callable[[RelaxOutcome], None] | None = None,
    trajectories: Sequence[Path] | None = None,
) -> list[RelaxOutcome]:
    """Relax many structures with one potential; the outcomes come back in input order.

    :param structures: pymatgen structures, any cell.
    :param potential: from ``load_potential``.
    :param settings: defaults to ``RelaxSettings()``.
    :param on_finished: called with each outcome as soon as it is final (relaxed or failed), so that a caller can
        save finished structures while the others still relax and a killed run loses only the unfinished ones.
    :param trajectories: one ASE trajectory file per structure, written frame by frame with energies and forces.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import Trajectory

    settings = settings or RelaxSettings()
    on_finished = on_finished or (lambda outcome: None)

    def done(job: _Job) -> None:
        # The trajectory is complete once its structure is: close it now, so a killed run leaves it readable.
        if job.trajectory is not None:
            job.trajectory.close()
        on_finished(job.outcome)

    jobs = [_start(index, structure, potential, settings) for index, structure in enumerate(structures)]
    active = []
    for job in jobs:
        if job.outcome.ok:
            _attach_optimizer(job, settings)
            if trajectories is not None:
                job.trajectory = Trajectory(str(trajectories[job.outcome.index]), 'w')
            active.append(job)
        else:
            done(job)
    while active:
        results = _evaluate_isolating_failures(potential, [job.atoms for job in active])
        still_active = []
        for job, result in zip(active, results):
            if (reason := _check(job, result, settings)) is not None:
                job.outcome.reason = reason
                done(job)
                continue
            job.evaluation = result
            job.atoms.calc = SinglePointCalculator(
                job.atoms, energy=result.energy, forces=result.forces, stress=result.stress
            )
            if job.trajectory is not None:
                job.trajectory.write(job.atoms)
            converged = job.optimizer.converged()
            if converged or job.outcome.steps >= settings.steps:
                _finish(job, settings, converged)
                done(job)
                continue
            job.optimizer.step()
            job.outcome.steps += 1
            still_active.append(job)
        active = still_active
    return [job.outcome for job in jobs]


def evaluate_structures(structures: Sequence[Structure], potential: LoadedPotential) -> list[float | None]:
    """Single-point energies per atom (eV/atom), ``None`` where the structure cannot be evaluated."""
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms_list = [AseAtomsAdaptor.get_atoms(structure) for structure in structures]
    results = _evaluate_isolating_failures(potential, atoms_list)
    return [
        r.energy / len(a) if isinstance(r, Evaluation) and math.isfinite(r.energy) else None
        for r, a in zip(results, atoms_list)
    ]
