"""Structural relaxation with one loaded potential: lockstep batches, the staged protocol, worker processes.

``relax_structures`` advances structures in lockstep: each round evaluates every unfinished structure in model
batches, then each ASE optimizer (BFGS or FIRE on a ``FrechetCellFilter``) takes one step. A structure that fails
(an element the potential lacks, overlapping atoms, NaN energies, an exploding or collapsing cell) ends with a
reason in its own ``RelaxOutcome``; the rest of the batch carries on.

The staged protocol (``STAGED``) first relaxes each structure in its own space group (``FixSymmetry``), stops
(prunes) those still far above the hull after a few steps, and relaxes freely from the symmetric minimum only the
ones that ended near the hull. ``relax_all`` runs it one structure at a time on each of several worker processes:
on CPU one structure per model call is as fast as lockstep batches and lets each structure stop on its own
(measured, docs/relaxation.md).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .potentials import Evaluation, LoadedPotential

if TYPE_CHECKING:
    from ase import Atoms
    from ase.optimize.optimize import Optimizer
    from pymatgen.core import Structure

__all__ = [
    'OPTIMIZERS',
    'STAGED',
    'DistanceToHull',
    'HullReference',
    'RelaxRun',
    'RelaxOutcome',
    'RelaxSettings',
    'available_cores',
    'default_workers',
    'evaluate_structures',
    'quiet_cell_filter_warnings',
    'relax_all',
    'relax_structures',
    'single_threaded_linear_algebra',
    'spacegroup_of',
]

OPTIMIZERS = ('BFGS', 'FIRE')


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax.

    :param optimizer: ``BFGS`` or ``FIRE``; BFGS needed 0.6x the steps of FIRE for the same or lower energies on
        generated cells (docs/relaxation.md).
    :param fmax: force convergence criterion in eV/Å (the cell filter folds the stress into it).
    :param steps: optimizer steps at most; a structure still moving then ends unconverged, with its energy.
    :param relax_cell: relax the lattice too (``FrechetCellFilter``), not only the positions.
    :param fix_symmetry: symmetrize the start to its space group at ``symprec`` and keep that group (ASE
        ``FixSymmetry``) instead of an unconstrained relaxation.
    :param primitive: relax the primitive cell, which is up to 4x smaller for centred lattices.
    :param symprec: tolerance in Å for the space groups reported before and after, and for ``fix_symmetry``.
    :param min_distance: two atoms closer than this (Å) mean overlapping input or a collapsed relaxation.
    :param max_volume_ratio: a cell whose volume grows or shrinks by more than this factor has exploded.
    :param free_within: after the symmetric stage (``fix_symmetry``), relax freely from its minimum the structures
        that ended at most this far (eV/atom) above the hull; ``None``: no free stage. Without ``fix_symmetry`` the
        one stage is free already and this has no effect, so ``fix_symmetry=False`` alone gives a free relaxation.
    :param prune_above: stop a structure whose energy lies more than this far (eV/atom) above the hull after
        ``prune_after`` steps of its first stage, recording it as pruned; ``None``: never prune.
    :param prune_after: the step of the first stage at which ``prune_above`` is checked.
    :param bfgs_alpha: BFGS's first guess of the Hessian in eV/Å² (ASE's ``alpha``, 70 by default there, a guess for
        the stiff bonds of molecules); FIRE ignores it. Crystals are softer: at 20 the staged protocol needed about a
        quarter fewer steps for the same end points (docs/relaxation.md).
    :param cell_stiffness: a guess of the cell's stiffness in eV/Å³ (0.9 is about 140 GPa), which scales the cell's
        coordinates in ``FrechetCellFilter`` (``exp_cell_factor`` = sqrt(stiffness x volume / ``bfgs_alpha``)) so that
        BFGS's first Hessian guess fits them as it fits the atoms', at least 1; ``None``: ASE's scaling (the number of
        atoms), under which cells of 3-40 atoms look about 4-60x softer than the guess and ``fmax`` accepts a cell
        still under up to 1 GPa of stress (docs/relaxation.md).
    """

    optimizer: str = 'BFGS'
    fmax: float = 0.05
    steps: int = 300
    relax_cell: bool = True
    fix_symmetry: bool = False
    primitive: bool = True
    symprec: float = 0.1
    min_distance: float = 0.5
    max_volume_ratio: float = 4.0
    free_within: float | None = None
    prune_above: float | None = None
    prune_after: int = 20
    bfgs_alpha: float = 70.0
    cell_stiffness: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be {' or '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if not (math.isfinite(self.fmax) and self.fmax > 0):
            raise ValueError(f'fmax must be a positive number of eV/Å, not {self.fmax}')
        if self.steps < 0 or self.prune_after < 0:
            raise ValueError(f'steps ({self.steps}) and prune_after ({self.prune_after}) must not be negative')
        if not (math.isfinite(self.bfgs_alpha) and self.bfgs_alpha > 0):
            raise ValueError(f'bfgs_alpha must be a positive curvature in eV/Å², not {self.bfgs_alpha}')
        if self.cell_stiffness is not None and not (math.isfinite(self.cell_stiffness) and self.cell_stiffness > 0):
            raise ValueError(f'cell_stiffness must be a positive eV/Å³ or None, not {self.cell_stiffness}')
        for name in ('free_within', 'prune_above'):
            if (value := getattr(self, name)) is not None and not math.isfinite(value):
                raise ValueError(f'{name} must be a finite distance to the hull in eV/atom or None, not {value}')

    @property
    def free_stage(self) -> bool:
        """Whether a free stage may follow the symmetric one; without ``fix_symmetry`` the only stage is free."""
        return self.fix_symmetry and self.free_within is not None

    @property
    def needs_hull(self) -> bool:
        """Whether deciding what to do with a structure needs its distance to the hull (pruning, the free stage)."""
        return self.free_stage or self.prune_above is not None


STAGED = RelaxSettings(
    optimizer='BFGS', fmax=0.1, steps=150, fix_symmetry=True, free_within=0.5, prune_above=2.0, prune_after=20,
    bfgs_alpha=20.0, cell_stiffness=0.9,
)
"""The staged protocol with its measured defaults (docs/relaxation.md): symmetric stage, pruning, free stage.

On the 64 committed generated cells, BFGS takes 0.6x the steps of FIRE. Pruning above 1.5 eV/atom after 10 steps
stopped a structure that free FIRE takes to +0.06 eV/atom (1.74 above the hull at step 10) and five that it takes within
0.2, so pruning stays at 2.0 after 20 steps, where nothing pruned ends within 0.2 in the unpruned run; one that the
free relaxation took to +0.03 eV/atom left its symmetric stage at +0.46, so the free stage covers 0.5 eV/atom."""


@dataclass
class RelaxOutcome:
    """What happened to one input structure; ``reason`` is ``None`` unless it failed.

    Energies are total (eV) and per atom (eV/atom) of the returned structure, from ``potential`` with checkpoint
    hash ``checkpoint_sha256``; with two stages that is the lower of the two, unless the free stage found the
    symmetric minimum again (its group, a few meV/atom lower), which leaves the symmetric stage's exact structure. A
    structure that hit the step limit is not failed: ``converged`` is ``False`` and its last energy is kept; nor is a
    pruned one, whose ``pruned`` says why it was stopped. ``stages`` holds per stage ``fix_symmetry``, ``steps``,
    ``converged``, ``energy_per_atom``, ``spacegroup`` and ``e_above_hull`` (and ``stopped``, why, where ASE refused a
    step and the stage ended there unconverged); ``kept_spacegroup`` whether the free stage
    kept the symmetric stage's group. ``e_above_hull`` (eV/atom) is known where the relaxation measured it (the staged
    protocol).
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
    pruned: str | None = None
    e_above_hull: float | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    kept_spacegroup: bool | None = None
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


DistanceToHull = Callable[['Structure', float], 'float | None']
"""e_above_hull (eV/atom) of a structure from its total energy (eV), ``None`` where no hull is known for it."""


class HullReference(Protocol):
    """What ``relax_all`` measures pruning and the free stage against; ``hull.MPHull`` is the one in use.

    The relaxation needs only a ``DistanceToHull``. Where that needs the potential's own energies of elemental reference
    structures, ``relax_all`` relaxes them first, freely, in the same workers as the inputs, so both share the potential
    and its settings; this module knows nothing else of hulls.
    """

    def reference_structures(self, elements: Sequence[str]) -> dict[str, Structure]:
        """The structure to relax first for each element that has one; empty where the energies are known."""

    def elemental_energies(self, relaxed: Mapping[str, RelaxOutcome]) -> dict[str, float]:
        """Per-atom reference energy (eV/atom) of each element, from the relaxations of ``reference_structures``."""

    def distance(self, elemental: Mapping[str, float]) -> DistanceToHull:
        """The distance to the hull against those energies; a plain object, since it travels to worker processes."""


@dataclass
class _Job:
    outcome: RelaxOutcome
    atoms: Atoms
    volume: float
    optimizer: Optimizer | None = None
    evaluation: Evaluation | None = None
    trajectory: Any = None
    """An open ``ase.io.Trajectory`` that receives every evaluated frame, when one was asked for."""
    stage_steps: int = 0
    best: tuple[float, Structure, int] | None = None
    """Energy (eV), structure and stage index of the stage the outcome reports, so far (``_end_stage``)."""


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


def _attach_optimizer(job: _Job, settings: RelaxSettings, fix_symmetry: bool) -> None:
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from ase.spacegroup.symmetrize import refine_symmetry

    job.atoms.set_constraint()
    if fix_symmetry:
        # Symmetrize first: FixSymmetry only constrains the displacements, so noise present at the start would stay.
        refine_symmetry(job.atoms, symprec=settings.symprec)
        job.atoms.set_constraint(FixSymmetry(job.atoms, symprec=settings.symprec))
    if settings.relax_cell:
        stiffness = settings.cell_stiffness
        # At least 1, ASE's smallest (one atom), so that a step of ``maxstep`` strains the cell by less than the quarter
        # that FixSymmetry refuses.
        factor = None
        if stiffness is not None:
            factor = max(1.0, math.sqrt(stiffness * job.atoms.get_volume() / settings.bfgs_alpha))
        target = FrechetCellFilter(job.atoms, exp_cell_factor=factor)
    else:
        target = job.atoms
    if settings.optimizer == 'BFGS':
        job.optimizer = BFGS(target, logfile=None, alpha=settings.bfgs_alpha)
    else:
        job.optimizer = FIRE(target, logfile=None)
    job.optimizer.fmax = settings.fmax  # ``run`` would set it; the lockstep loop calls ``step`` itself
    job.stage_steps = 0


FREE_STAGE_RATTLE = 0.02
"""Å: the free stage starts from the symmetric minimum displaced this much, because at an exact saddle of higher
symmetry the forces are symmetric too, and an unconstrained optimizer would stay on it."""


def _start_free_stage(job: _Job, settings: RelaxSettings) -> None:
    _attach_optimizer(job, settings, fix_symmetry=False)
    rng = np.random.default_rng(job.outcome.index)
    job.atoms.positions += rng.normal(scale=FREE_STAGE_RATTLE, size=job.atoms.positions.shape)


def _evaluate_one(potential: LoadedPotential, atoms: Atoms) -> Evaluation | str:
    try:
        return potential.evaluate([atoms])[0]
    except Exception as exception:  # noqa: BLE001 - a model can raise anything; it becomes this structure's reason
        return f'{potential.name} evaluation failed: {type(exception).__name__}: {exception}'


def _model_batches(potential: LoadedPotential, atoms_list: Sequence[Atoms]) -> list[Sequence[Atoms]]:
    """Consecutive batches of at most ``batch_size`` structures and ``batch_atoms`` atoms (a larger one alone)."""
    batches: list[list[Atoms]] = [[]]
    atoms_in_batch = 0
    for atoms in atoms_list:
        full = len(batches[-1]) == potential.batch_size or atoms_in_batch + len(atoms) > potential.batch_atoms
        if batches[-1] and full:
            batches.append([])
            atoms_in_batch = 0
        batches[-1].append(atoms)
        atoms_in_batch += len(atoms)
    return [batch for batch in batches if batch]


def _evaluate_isolating_failures(potential: LoadedPotential, atoms_list: Sequence[Atoms]) -> list[Evaluation | str]:
    """Evaluate in model batches; a batch that raises is retried one by one, so only the bad structure fails."""
    results: list[Evaluation | str] = []
    for chunk in _model_batches(potential, atoms_list):
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


def _structure_of(atoms: Atoms) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = atoms.copy()
    atoms.set_constraint()
    return AseAtomsAdaptor.get_structure(atoms)


def _distance(job: _Job, hull_distance: DistanceToHull | None) -> tuple[Structure, float | None]:
    """The current structure and its distance to the hull (eV/atom), where one is known."""
    structure = _structure_of(job.atoms)
    return structure, hull_distance(structure, float(job.evaluation.energy)) if hull_distance is not None else None


def _end_stage(
    job: _Job, settings: RelaxSettings, converged: bool, structure: Structure, distance: float | None,
    stopped: str | None = None,
) -> None:
    energy = float(job.evaluation.energy)
    job.outcome.stages.append({
        'fix_symmetry': bool(job.atoms.constraints),
        'steps': job.stage_steps,
        'converged': converged,
        'energy_per_atom': energy / len(structure),
        'spacegroup': spacegroup_of(structure, settings.symprec),
        'e_above_hull': distance,
        **({'stopped': stopped} if stopped else {}),
    })
    if job.best is None or (energy < job.best[0] and not _symmetric_minimum_again(job.outcome.stages)):
        job.best = (energy, structure, len(job.outcome.stages) - 1)


SAME_MINIMUM_WITHIN = 0.005
"""eV/atom: a free stage that stays in the symmetric stage's group and ends less than this much lower found the
symmetric minimum again. Stopping at ``fmax`` 0.1 eV/Å leaves about f²/2k per degree of freedom unresolved, up to
about 3 meV/atom at the curvatures of crystals (5-20 eV/Å²). Of the 24 labels that a bare same-group rule restored on
766 relaxations, 23 were within this (docs/relaxation.md)."""


def _symmetric_minimum_again(stages: list[dict[str, Any]]) -> bool:
    """Whether the stage just ended is a free stage that found the symmetric stage's minimum again: the same space
    group (at ``symprec``), less than :data:`SAME_MINIMUM_WITHIN` lower.

    Its structure is then the symmetric one plus the start's rattle and what ``fmax`` leaves, a noise that spglib at
    the same tolerance, or a DFT code at a tighter one, reads as a lower group (a P6_3/mcm Er5Ni3, hexagonal to
    0.002°, labelled P1), so the symmetric stage's exactly symmetric structure is kept. A free stage far lower in the
    same group found another structure (a Li2O2 0.31 eV/atom lower, still P4_2/mnm) and is taken.
    """
    if len(stages) < 2 or not stages[0]['fix_symmetry'] or stages[-1]['spacegroup'] != stages[0]['spacegroup']:
        return False
    return stages[0]['energy_per_atom'] - stages[-1]['energy_per_atom'] < SAME_MINIMUM_WITHIN


def _finish(job: _Job) -> None:
    """The outcome is the lowest-energy stage, the one the hull takes, except that a free stage that found the
    symmetric minimum again leaves the symmetric stage's structure (``_symmetric_minimum_again``)."""
    energy, structure, index = job.best
    outcome, stage = job.outcome, job.outcome.stages[index]
    outcome.converged = stage['converged']
    outcome.energy = energy
    outcome.energy_per_atom = stage['energy_per_atom']
    outcome.structure = structure
    outcome.spacegroup_final = stage['spacegroup']
    outcome.e_above_hull = stage['e_above_hull']
    if len(outcome.stages) == 2:
        outcome.kept_spacegroup = outcome.stages[1]['spacegroup'] == outcome.stages[0]['spacegroup']


def _step(job: _Job) -> str | None:
    """One optimizer step; where ASE refuses it (``FixSymmetry`` cannot symmetrize a cell step deforming it by more
    than a quarter), why, with the structure left as it was, so that the stage ends there unconverged."""
    positions, cell = job.atoms.get_positions(), job.atoms.get_cell().copy()
    try:
        job.optimizer.step()
    except RuntimeError as error:
        job.atoms.set_cell(cell, apply_constraint=False)
        job.atoms.set_positions(positions, apply_constraint=False)
        return f'step {job.stage_steps + 1} refused: {error}'
    return None


def _advance(job: _Job, settings: RelaxSettings, hull_distance: DistanceToHull | None) -> bool:
    """One optimizer step, or the end of a stage (converged, out of steps, pruned); whether the job goes on."""
    converged = bool(job.optimizer.converged())  # ASE returns numpy booleans, which JSON cannot write
    first_stage = not job.outcome.stages
    refused = None
    if not converged and job.stage_steps < settings.steps:
        if first_stage and settings.prune_above is not None and job.stage_steps == settings.prune_after:
            structure, distance = _distance(job, hull_distance)
            if distance is not None and distance > settings.prune_above:
                job.outcome.pruned = (
                    f'{distance:.3f} eV/atom above the hull after {job.stage_steps} steps (> {settings.prune_above})'
                )
                _end_stage(job, settings, converged, structure, distance)
                _finish(job)
                return False
        refused = _step(job)
        if refused is None:
            job.stage_steps += 1
            job.outcome.steps += 1
            return True
    structure, distance = _distance(job, hull_distance)
    _end_stage(job, settings, converged, structure, distance, refused)
    if first_stage and settings.free_stage and (distance is None or distance <= settings.free_within):
        _start_free_stage(job, settings)
        return True
    _finish(job)
    return False


def relax_structures(
    structures: Sequence[Structure],
    potential: LoadedPotential,
    settings: RelaxSettings | None = None,
    on_finished: Callable[[RelaxOutcome], None] | None = None,
    trajectories: Sequence[Path] | None = None,
    hull_distance: DistanceToHull | None = None,
) -> list[RelaxOutcome]:
    """Relax many structures in lockstep with one potential; the outcomes come back in input order.

    :param structures: pymatgen structures, any cell.
    :param potential: from ``load_potential``.
    :param settings: defaults to ``RelaxSettings()``.
    :param on_finished: called with each outcome as soon as it is final (relaxed or failed), so that a caller can
        save finished structures while the others still relax and a killed run loses only the unfinished ones.
    :param trajectories: one ASE trajectory file per structure, written frame by frame with energies and forces.
    :param hull_distance: what pruning and the free stage measure against; required when ``settings.needs_hull``.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import Trajectory

    settings = settings or RelaxSettings()
    if settings.needs_hull and hull_distance is None:
        raise ValueError('pruning and the free stage measure the distance to the hull: give hull_distance')
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
            _attach_optimizer(job, settings, settings.fix_symmetry)
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
            if _advance(job, settings, hull_distance):
                still_active.append(job)
            else:
                done(job)
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


def quiet_cell_filter_warnings() -> None:
    """Silence scipy's ``logm result may be inaccurate`` warnings, which the cell filter triggers at almost every
    step of a nearly undeformed cell (errors of ~1e-13) and which otherwise flood a job's stderr."""
    warnings.filterwarnings('ignore', message='logm result may be inaccurate', category=RuntimeWarning)


def single_threaded_linear_algebra() -> None:
    """One BLAS thread for this process: the cell filter, FixSymmetry and FIRE work on 3x3 to 3N-sized arrays, where
    OpenBLAS threads only spin; on 2 busy cores they doubled the CPU time of a CHGNet relaxation (docs/relaxation.md).

    scipy ships its own OpenBLAS, loaded with ``scipy.linalg`` (the cell filter's ``logm``); a limit only reaches the
    libraries already loaded, so scipy's is loaded first, or its threads would spin beside every relaxation."""
    import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS so that the limit below reaches it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api='blas')


def available_cores() -> int:
    """The cores this process may run on (what the scheduler gave it), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(cores: int | None = None) -> int:
    """One worker per core, each on one torch thread: on this project's 2-core machine, 24 structures took 31 s with
    two one-thread workers against 35 s in one process on two threads, and two one-thread relax jobs side by side
    1.3-1.5x less time than one two-thread job (docs/relaxation.md, "Cores")."""
    return cores or available_cores()


@dataclass
class RelaxRun:
    """What ``relax_all`` did: an outcome per input, in input order, and the hull it measured against.

    :param elemental: per-atom reference energy (eV/atom) of each element, ``None`` where no hull was needed.
    :param references: the relaxation of each element's ground state, where the run relaxed it itself (an input
        that is that ground state counts and appears in ``outcomes`` too).
    """

    outcomes: list[RelaxOutcome]
    elemental: dict[str, float] | None = None
    references: dict[str, RelaxOutcome] = field(default_factory=dict)


_WORKER: dict[str, LoadedPotential] = {}
"""The potential each worker process loads once, in ``_start_worker``."""


def _die_with_parent() -> None:
    """Linux: let the kernel kill this worker when the relax command dies, so a killed job leaves no orphans."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


def _start_worker(name: str, checkpoint: Path, device: str, threads: int) -> None:
    import torch

    from .potentials import load_potential

    _die_with_parent()
    torch.set_num_threads(threads)  # the workers share the cores: torch's own default would oversubscribe them
    single_threaded_linear_algebra()
    quiet_cell_filter_warnings()
    _WORKER['potential'] = load_potential(name, checkpoint, device=device)


def _relax_one(
    potential: LoadedPotential,
    index: int,
    structure: Structure,
    settings: RelaxSettings,
    hull_distance: DistanceToHull | None,
    trajectory: Path | None,
) -> RelaxOutcome:
    trajectories = None if trajectory is None else [trajectory]
    outcome = relax_structures([structure], potential, settings, trajectories=trajectories, hull_distance=hull_distance)[0]
    outcome.index = index
    return outcome


def _relax_in_worker(*args: Any) -> RelaxOutcome:
    return _relax_one(_WORKER['potential'], *args)


class _Pool:
    """Relaxes structures one per model call, in this process (one worker) or in worker processes."""

    def __init__(self, potential: LoadedPotential, workers: int, device: str, cores: int | None = None) -> None:
        self.potential = potential
        self.executor = None
        if workers == 1:
            if cores is not None:  # otherwise torch keeps the threads the caller gave it
                import torch

                torch.set_num_threads(cores)
        else:
            cores = cores or available_cores()
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: a forked copy of a process that already ran torch can deadlock in its thread pool.
            self.executor = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context('spawn'),
                initializer=_start_worker,
                initargs=(potential.name, potential.checkpoint, device, max(1, cores // workers)),
            )

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def relax(
        self,
        tasks: Sequence[tuple[int, Structure, Path | None]],
        settings: RelaxSettings,
        hull_distance: DistanceToHull | None,
        on_finished: Callable[[RelaxOutcome], None],
    ) -> dict[int, RelaxOutcome]:
        """Outcomes by task index; the largest structures go first, so no worker is left with one at the end."""
        ordered = sorted(tasks, key=lambda task: -len(task[1]))
        outcomes = {}
        if self.executor is None:
            for index, structure, trajectory in ordered:
                outcomes[index] = _relax_one(self.potential, index, structure, settings, hull_distance, trajectory)
                on_finished(outcomes[index])
            return outcomes
        from concurrent.futures import as_completed

        futures = [self.executor.submit(_relax_in_worker, *task[:2], settings, hull_distance, task[2]) for task in ordered]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.index] = outcome
            on_finished(outcome)
        return outcomes


def _reference_inputs(structures: Sequence[Structure], references: Mapping[str, Structure]) -> dict[str, int]:
    """Which input, if any, is each element's reference structure: it is relaxed once, as that input."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    inputs = {}
    for position, structure in enumerate(structures):
        element = structure.composition.elements[0].symbol if len(structure.composition) == 1 else None
        if element in references and element not in inputs and matcher.fit(structure, references[element]):
            inputs[element] = position
    return inputs


def relax_all(
    structures: Sequence[Structure],
    potential: LoadedPotential,
    settings: RelaxSettings | None = None,
    *,
    workers: int = 1,
    cores: int | None = None,
    device: str = 'cpu',
    hull: HullReference | None = None,
    on_finished: Callable[[RelaxOutcome], None] | None = None,
    trajectories: Sequence[Path] | None = None,
) -> RelaxRun:
    """Relax every structure alone (one per model call) on ``workers`` processes; the staged protocol by default.

    Where the settings need distances to the hull (pruning, the free stage), ``hull`` gives them: the reference
    structures it names are relaxed first, freely and without pruning (an input that is one is used as it is), and
    the distances are measured against their energies.

    :param potential: loaded here; worker processes load their own copy by name and checkpoint.
    :param workers: processes sharing the cores as torch threads; 1 relaxes in this process.
    :param cores: the cores this run may use (torch threads in all), fewer than the machine's where relax jobs share
        it; default: all this process may run on.
    :param hull: what pruning and the free stage measure against; required when ``settings.needs_hull``.
    :param on_finished: called in this process with each outcome as soon as it is final.
    """
    settings = settings or STAGED
    if workers < 1:
        raise ValueError(f'workers must be at least 1, not {workers}')
    if settings.needs_hull and hull is None:
        raise ValueError('pruning and the free stage measure the distance to the hull: give hull')
    on_finished = on_finished or (lambda outcome: None)
    trajectory = (lambda index: trajectories[index]) if trajectories is not None else (lambda index: None)
    tasks = {index: (index, structure, trajectory(index)) for index, structure in enumerate(structures)}
    run = RelaxRun([])
    outcomes: dict[int, RelaxOutcome] = {}
    with _Pool(potential, workers, device, cores) as pool:
        hull_distance = None
        if hull is not None and settings.needs_hull:
            references = hull.reference_structures(sorted({e.symbol for s in structures for e in s.composition}))
            inputs = _reference_inputs(structures, references)
            # References that are not among the inputs get negative indices and are not reported as inputs.
            missing = sorted(set(references) - set(inputs))
            indices = inputs | {element: -1 - i for i, element in enumerate(missing)}
            reference_tasks = [
                tasks.pop(index) if index >= 0 else (index, references[element], None)
                for element, index in indices.items()
            ]

            def report_input(outcome: RelaxOutcome) -> None:
                if outcome.index >= 0:
                    on_finished(outcome)

            free = replace(settings, fix_symmetry=False, free_within=None, prune_above=None)
            done = pool.relax(reference_tasks, free, None, report_input)
            outcomes.update({index: outcome for index, outcome in done.items() if index >= 0})
            run.references = {element: done[indices[element]] for element in references}
            run.elemental = hull.elemental_energies(run.references)
            hull_distance = hull.distance(run.elemental)
        outcomes.update(pool.relax(list(tasks.values()), settings, hull_distance, on_finished))
    run.outcomes = [outcomes[index] for index in range(len(structures))]
    return run
