"""Discovery benchmark: the model against the baselines a materials scientist would use, on outcomes.

Every generator runs in this one process, on the same requests, with the same budget of samples:

- ``model:...`` the shipped checkpoint at a sampling setting (``g`` guidance, ``guided`` the conditions it
  contrasts, ``steps`` reverse steps, ``e`` the e_above_hull condition, ``plausible`` the composition filter);
- ``base``: the same network with its adapters off (guidance 0 over all conditions: hard masks only);
- ``random``: random protostructures from the training split's per-space-group Wyckoff frequencies
  (``baselines.random_protostructures``);
- ``substitution``: pymatgen's data-mined ionic substitution into training-split structures
  (``baselines.substituted_structures``).

Generation level (no relaxation), on held-out test-split (chemical system, space group) pairs: recall of the
held-out label among the samples of its request, distances of the atoms / orbits / elements-per-crystal
distributions to the test split, SMACT validity, plausible composition (alkali and alkaline-earth peroxides and superoxides allowed),
uniqueness and novelty against the training labels, and CPU seconds.

Outcome level, per chemical system (Li-O, Ti-O and binaries whose structures all lie in the test split): samples
cycle over the 20 most frequent training space groups at e_above_hull = 0, are realized with PyXtal, relaxed with
CHGNet as the workflow's relax jobs do (``relax.relax_all``, the staged protocol with pruning; ``--relax-steps`` per
stage, ``--free`` for the old free relaxation) and placed on the Materials Project hull. Reported: distinct
structures within 0.1 eV/atom of the MP hull ("hits", distinct by the relaxed structure's label) per 100 samples
and per core-minute (CPU time of generation, realization and relaxation summed over processes), and the MP hull
phases of the system regenerated (training-split and test-split phases apart). Counts are small: each hit count
comes with a Poisson 90 % interval, so two settings differ beyond noise only where their intervals do not overlap.

    python benchmarks/discovery.py [--quick] [--output benchmarks/discovery_results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TODAY = 'model:g=2,guided=all'
"""The sampling defaults before this benchmark chose new ones (guidance 2 on all three conditions)."""


@dataclass(frozen=True)
class Generator:
    """A named source of candidates; ``config`` only for the model; ``candidates`` realizations per protostructure
    (``k=``), the lowest after the workflow's 30-step pre-relaxation kept (``candidates.choose_realizations``)."""

    name: str
    config: Any = None
    candidates: int = 1
    checkpoint: str | None = None
    realization: str = 'pyxtal'
    """``real=template``: realized from training crystals where one has the prototype (``templates``), PyXtal else."""
    known_prototypes: float = 0.0
    """``random:known=SHARE``: that share of each group's random samples drawn uniformly from the training
    arrangements, the model's ``known=`` without its score."""
    relax_changes: dict[str, Any] = field(default_factory=dict)
    """``alpha=A`` and ``cell=C`` (any generator): relax this arm with ``RelaxSettings.bfgs_alpha`` A and
    ``cell_stiffness`` C (``cell=ase``: ASE's scaling, the default before 7 December 2026, session 27) instead of the
    run's, so two relaxation settings can be compared on the same samples in one process."""

    @property
    def kind(self) -> str:
        """``model``, ``base``, ``random`` or ``substitution``."""
        return self.name.split(':', 1)[0]


def model_generator(name: str) -> Generator:
    """``model:g=2,guided=e_above_hull,steps=100,e=0,t=1,known=0,plausible=1,exact=1,across=1,k=1,ckpt=PATH,real=template``: any
    omitted key keeps the default (``t``: the sampling temperature, 0.5 by default since 7 December 2026 and 1
    before; ``known``: the library share of known prototypes, 0.875 by default since 7 December 2026, 0.75 since 5
    December and 0 before, so older result files' names without it mean those; ``plausible``:
    the composition filter, on by default since 6 December 2026 and off before, likewise; ``exact``: the constrained
    last step (chains that break the composition completed, not redrawn), on by default since 6 December 2026
    (morning); ``across``: ``known_prototypes_across_groups``, on by default since 7 December 2026 and off before;
    ``eg``: ``energy_guidance``, the
    weight of a fine-tuned checkpoint's energy head (``model/energy.py``); ``es``: ``energy_screen``, the factor of
    samples that head screens; ``ckpt``:
    another checkpoint file than the shipped one, to compare a retrained model in the same run; ``real``: the
    realization method, ``pyxtal`` by default; ``alpha``, ``cell``: see ``Generator.relax_changes``)."""
    from aiida_wyckoffdiff.model.config import GUIDABLE_CONDITIONS, SamplingConfig

    settings = dict(item.split('=', 1) for item in name.split(':', 1)[1].split(',') if item)
    guided = settings.get('guided', 'all')
    config = SamplingConfig(
        guidance_scale=float(settings.get('g', 2.0)),
        guided=GUIDABLE_CONDITIONS if guided == 'all' else tuple(guided.split('+')),
        num_steps=int(settings.get('steps', 100)),
        plausible=settings.get('plausible', str(int(SamplingConfig.plausible))) == '1',
        plausible_library=settings.get('plib', '0') == '1',
        constrained_last_step=settings.get('exact', str(int(SamplingConfig.constrained_last_step))) == '1',
        known_prototypes_across_groups=settings.get('across', str(int(SamplingConfig.known_prototypes_across_groups))) == '1',
        temperature=float(settings.get('t', SamplingConfig.temperature)),
        known_prototypes=float(settings.get('known', SamplingConfig.known_prototypes)),
        energy_guidance=float(settings.get('eg', SamplingConfig.energy_guidance)),
        energy_screen=int(settings.get('es', SamplingConfig.energy_screen)),
    )
    return Generator(
        name, (config, float(settings.get('e', 0.0))), int(settings.get('k', 1)), settings.get('ckpt') or None,
        settings.get('real', 'pyxtal'), relax_changes=_relax_changes(settings),
    )


def _relax_changes(settings: dict[str, str]) -> dict[str, Any]:
    """The relaxation settings a generator name's ``alpha=`` and ``cell=`` keys change (none: the run's)."""
    changes: dict[str, Any] = {}
    if 'alpha' in settings:
        changes['bfgs_alpha'] = float(settings['alpha'])
    if 'cell' in settings:
        changes['cell_stiffness'] = None if settings['cell'] == 'ase' else float(settings['cell'])
    return changes


def as_generator(name: str) -> Generator:
    """A generator by name: ``model:...``, ``base``, ``random`` (``random:k=2,real=template``) or ``substitution``."""
    if name.startswith('model:'):
        return model_generator(name)
    kind, _, options = name.partition(':')
    settings = dict(item.split('=', 1) for item in options.split(',') if '=' in item)
    if kind not in ('base', 'random', 'substitution') or len(settings) != len([o for o in options.split(',') if o]) \
            or set(settings) - {'k', 'real', 'known', 'alpha', 'cell'} \
            or settings.get('real', 'pyxtal') not in ('pyxtal', 'template') \
            or ('known' in settings and kind != 'random'):
        raise SystemExit(f'unknown generator {name!r}: model:..., base, '
                         'random[:k=K,real=template,known=SHARE,alpha=A,cell=C] or substitution[:alpha=A,cell=C]')
    return Generator(name, candidates=int(settings.get('k', 1)), realization=settings.get('real', 'pyxtal'),
                     known_prototypes=float(settings.get('known', 0.0)), relax_changes=_relax_changes(settings))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def poisson_interval(count: int, level: float = 0.9) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson count."""
    from scipy.stats import chi2

    tail = (1 - level) / 2
    low = 0.0 if count == 0 else chi2.ppf(tail, 2 * count) / 2
    return float(low), float(chi2.ppf(1 - tail, 2 * count + 2) / 2)


class Context:
    """Everything the generators share: the model, the dataset, its prior and the training structures."""

    def __init__(self, seed: int, dataset: Path | None = None, data_dir: Path | None = None) -> None:
        import torch

        from aiida_wyckoffdiff.baselines import WyckoffPrior
        from aiida_wyckoffdiff.data import build_dataset, default_dataset_path, find_data_dir, load_dataset
        from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, shipped_checkpoint_path
        from aiida_wyckoffdiff.relax import quiet_cell_filter_warnings, single_threaded_linear_algebra
        from aiida_wyckoffdiff.templates import arrangement_of

        torch.set_num_threads(1)
        single_threaded_linear_algebra()  # as in a relax job: OpenBLAS threads only spin on 3x3 algebra
        quiet_cell_filter_warnings()
        self.seed = seed
        self.data_dir = find_data_dir(data_dir)
        dataset = dataset or default_dataset_path(self.data_dir)
        if not dataset.is_file():
            print(f'building the dataset {dataset} from {self.data_dir} (once)', flush=True)
            build_dataset(self.data_dir, output=dataset)
        self.checkpoint = load_checkpoint(shipped_checkpoint_path(), 'cpu')
        self._checkpoints = {None: self.checkpoint}
        self.frame = load_dataset(dataset)
        self.train = self.frame[self.frame['split'] == 'train']
        self.train_labels = set(self.train['label'])
        self.train_prototypes = {label.split(':')[0] for label in self.train_labels}
        self.train_arrangements = {arrangement_of(label) for label in self.train_labels}
        self.prior = WyckoffPrior.from_dataset(self.frame)
        self._structures: dict[int, list] = {}

    def model(self, generator: Generator) -> Any:
        """The network a model generator samples from: the shipped checkpoint or its ``ckpt=`` file, loaded once."""
        from aiida_wyckoffdiff.model.checkpoint import load_checkpoint

        if generator.checkpoint not in self._checkpoints:
            self._checkpoints[generator.checkpoint] = load_checkpoint(generator.checkpoint, 'cpu')
        return self._checkpoints[generator.checkpoint].model

    def training_structures(self, num_elements: int, spacegroup: int | None = None) -> list:
        """The sources of the substitution baseline (``baselines.training_sources``), of one space group if given."""
        from aiida_wyckoffdiff.baselines import training_sources

        if num_elements not in self._structures:
            self._structures[num_elements] = training_sources(num_elements, self.data_dir)
        return [s for _, group, s in self._structures[num_elements] if spacegroup in (None, group)]

    def generate(
        self, generator: Generator, chemsys: tuple[str, ...], spacegroups: list[int], num_samples: int, seed: int,
        exclude: frozenset[str] = frozenset(),
    ) -> tuple[list, int]:
        """Candidates (protostructures, or structures for substitution) and the slots that returned nothing; the model
        returns no protostructure of ``exclude`` (``GenerationRequest.exclude``)."""
        import torch

        from aiida_wyckoffdiff.baselines import random_protostructures, substituted_structures
        from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate

        if generator.kind == 'random':
            samples = random_protostructures(self.prior, chemsys, spacegroups, num_samples, seed=seed,
                                             known_prototypes=generator.known_prototypes)
        elif generator.kind == 'substitution':
            group = spacegroups[0] if len(spacegroups) == 1 else None
            samples = substituted_structures(
                self.training_structures(len(chemsys), group), chemsys, max_structures=num_samples
            )
        else:
            config, energy = self._sampling(generator)
            request = GenerationRequest(chemsys, tuple(spacegroups), energy, num_samples, exclude)
            result = generate(self.model(generator), request, config, torch.Generator().manual_seed(seed))
            samples = [sample.protostructure for sample in result.samples]
        return samples, num_samples - len(samples)


    def _sampling(self, generator: Generator) -> tuple[Any, float]:
        from aiida_wyckoffdiff.model.config import GUIDABLE_CONDITIONS, SamplingConfig

        if generator.kind == 'base':
            return SamplingConfig(guidance_scale=0.0, guided=GUIDABLE_CONDITIONS, max_draws=10, known_prototypes=0.0), 0.0
        return generator.config

    def generate_many(
        self, generator: Generator, requests: list[tuple[tuple[str, ...], list[int]]], num_samples: int
    ) -> list[tuple[list, int]]:
        """The model's samples for many requests in shared batches (``sampling.generate_many``)."""
        import torch

        from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate_many

        config, energy = self._sampling(generator)
        batch = [GenerationRequest(chemsys, tuple(groups), energy, num_samples) for chemsys, groups in requests]
        results = generate_many(self.model(generator), batch, config, torch.Generator().manual_seed(self.seed))
        return [([s.protostructure for s in r.samples], r.num_failed) for r in results]


def _label(candidate: Any) -> str | None:
    from aiida_wyckoffdiff.symmetry import Protostructure, structure_label

    if isinstance(candidate, Protostructure):
        return candidate.label
    try:
        return structure_label(candidate)
    except Exception:  # noqa: BLE001 - an unlabelable proposal simply has no label
        return None


def _counts(label: str) -> tuple[int, int, int]:
    from aiida_wyckoffdiff.symmetry import Protostructure

    protostructure = Protostructure.from_label(label)
    return protostructure.num_atoms, sum(n for _, _, n in protostructure.sites), len(protostructure.elements)


def generation_level(context: Context, generator: Generator, requests: list, per_request: int) -> dict[str, Any]:
    from aiida_wyckoffdiff.metrics import composition_plausible, distribution_distance, novelty, recall, smact_valid
    from aiida_wyckoffdiff.symmetry import Protostructure

    started, failed, per_request_labels = cpu_seconds(), 0, []
    if generator.kind in ('model', 'base'):
        batched = context.generate_many(generator, [(e, [g]) for e, g, _ in requests], per_request)
    else:
        batched = [
            context.generate(generator, elements, [spacegroup], per_request, context.seed + index)
            for index, (elements, spacegroup, _) in enumerate(requests)
        ]
    for samples, missing in batched:
        failed += missing
        per_request_labels.append([label for label in map(_label, samples) if label is not None])
    seconds = cpu_seconds() - started
    labels = [label for found in per_request_labels for label in found]
    result: dict[str, Any] = {
        'generator': generator.name,
        'requests': len(requests),
        'slots': len(requests) * per_request,
        'samples': len(labels),
        'failed_slots': failed,
        'cpu_seconds': round(seconds, 1),
        'recall': round(recall([label for _, _, label in requests], per_request_labels), 3),
        'recovered': sum(label in found for (_, _, label), found in zip(requests, per_request_labels, strict=True)),
    }
    if not labels:
        return result
    test = context.frame[context.frame['split'] == 'test']
    reference = {
        'atoms': test['num_atoms'].tolist(),
        'orbits': [sum(n for _, _, n in matrix) for matrix in test['wyckoff_matrix']],
        'elements': (test['chemsys'].str.count('-') + 1).tolist(),
    }
    generated = dict(zip(('atoms', 'orbits', 'elements'), zip(*map(_counts, labels), strict=True), strict=True))
    for key, values in generated.items():
        distance = distribution_distance(values, reference[key])
        result[f'{key}_median'] = distance.median
        result[f'{key}_wasserstein'] = round(distance.wasserstein, 2)
        result[f'{key}_js'] = round(distance.jensen_shannon, 3)
    compositions = [Protostructure.from_label(label).composition for label in labels]
    result['smact_valid'] = round(float(np.mean([smact_valid(c) for c in compositions])), 3)
    result['plausible'] = round(float(np.mean([composition_plausible(c) for c in compositions])), 3)
    result['unique'] = round(len(set(labels)) / len(labels), 3)
    result['novel'] = round(novelty(labels, context.train_labels), 3)
    return result


# --- outcome level: realize here, relax with the pipeline's own relax_all on worker processes ---------------


def _distinct(candidates: list, labels: list[str | None]) -> list:
    """The candidates with repeated labels dropped, as the workflow realizes only distinct protostructures."""
    by_label: dict[Any, Any] = {}
    for index, (candidate, label) in enumerate(zip(candidates, labels, strict=True)):
        by_label.setdefault(label or index, candidate)  # an unlabelled candidate is its own
    return list(by_label.values())


def _hit_rates(hits: int, samples: int, core_minutes: float) -> dict[str, Any]:
    """The hit count with its Poisson 90 % interval, per 100 samples and per core-minute."""
    low, high = poisson_interval(hits)
    return {
        'hits': hits,
        'hits_interval_90': [round(low, 1), round(high, 1)],
        'hits_per_100_samples': round(100 * hits / max(1, samples), 2),
        'core_minutes': round(core_minutes, 2),
        'hits_per_core_minute': round(hits / core_minutes, 3) if core_minutes else None,
    }


def _realized(
    candidates: list, seed: int, potential: Any, per_protostructure: int, workers: int, realization: str = 'pyxtal'
) -> tuple[list, list[str | None], Counter]:
    """Structures of the candidates (protostructures realized with PyXtal or, with ``realization`` ``template``, from
    training crystals where they can be; best of ``per_protostructure`` after a pre-relaxation where that is above 1;
    structures as they are), the label of the candidate each came from, and why others could not be realized."""
    from aiida_wyckoffdiff.candidates import choose_realizations
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.symmetry import Protostructure
    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates() if realization == 'template' else None
    structures, requests, failures = [], [], Counter()
    protostructures = [c for c in candidates if isinstance(c, Protostructure)]
    if per_protostructure > 1 and protostructures:
        choices = choose_realizations(protostructures, potential, per_protostructure, seed=seed, workers=workers,
                                      templates=library)
        results = iter((choice.structure, choice.reason) for choice in choices)
    else:
        templates = [library.templates_for(p, 1) if library else [] for p in protostructures]
        draws = (realize(p, seed=seed + i, template=own[0] if own else None, scale_volume=library is not None)
                 for i, (p, own) in enumerate(zip(protostructures, templates, strict=True)))
        results = iter((r.structure, r.reason) for r in draws)
    for candidate in candidates:
        request = _label(candidate)
        if isinstance(candidate, Protostructure):
            candidate, reason = next(results)
            if candidate is None:
                failures[(reason or 'failed').split(' (')[0][:60]] += 1
                continue
        structures.append(candidate)
        requests.append(request)
    return structures, requests, failures


def _crystal_system(label: str) -> str:
    from aiida_wyckoffdiff.symmetry import Protostructure

    return Protostructure.from_label(label).info.crystal_system


def hull_phases(chemsys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The system's MP hull compounds that have a protostructure label (elements left out), with their split."""
    from aiida_wyckoffdiff.data import split_of
    from aiida_wyckoffdiff.hull import reference_phase_diagram
    from aiida_wyckoffdiff.references import reference_entries

    table = reference_entries(chemsys).set_index('material_id')
    phases = []
    for entry in reference_phase_diagram(chemsys).stable_entries:
        if len(entry.composition) < 2 or entry.name not in table.index:
            continue
        label = table.loc[entry.name, 'label']
        phases.append(
            {
                'material_id': entry.name,
                'formula': entry.composition.reduced_formula,
                'label': label or None,
                'split': split_of(entry.name),
            }
        )
    return phases


def elemental_references(potential: Any, systems: list[tuple[str, ...]]) -> dict[str, float]:
    """The elemental reference energies of every element of ``systems``, relaxed tighter and longer than the
    generated structures, as every outcome benchmark takes them."""
    from aiida_wyckoffdiff.hull import elemental_energies
    from aiida_wyckoffdiff.relax import RelaxSettings

    elements = sorted({element for system in systems for element in system})
    return elemental_energies(potential, elements, RelaxSettings(fmax=0.1, steps=300))


def outcome_level(
    context: Context,
    generator: Generator,
    chemsys: tuple[str, ...],
    num_samples: int,
    potential: Any,
    settings: Any,
    elemental: dict[str, float],
    workers: int,
    spacegroups: list[int],
    relaxed: list[dict[str, Any]] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Generate, realize, relax (``relax.relax_all``, as the workflow's relax jobs do) and place on the MP hull.

    Core-minutes are the CPU time of this process and of the relax workers, which end (and are counted) with each
    ``relax_all`` call; the workers' start, loading the potential, is in it too, as it is in a relax job. ``relaxed``,
    where given, receives each relaxed structure with its energies and whether it was pruned (``benchmarks/rounds.py``
    learns from them).
    """
    from aiida_wyckoffdiff.hull import MPHull, hull_rows, merge_duplicates
    from aiida_wyckoffdiff.references import reference_entries
    from aiida_wyckoffdiff.relax import relax_all
    from aiida_wyckoffdiff.symmetry import structure_label

    hull = MPHull(apply_mp2020=not potential.includes_mp2020, elemental=elemental)
    settings = replace(settings, **generator.relax_changes)
    started = cpu_seconds()
    wall = time.perf_counter()
    candidates, _ = context.generate(generator, chemsys, spacegroups, num_samples, context.seed, exclude)
    generate_seconds = cpu_seconds() - started
    labels = [_label(candidate) for candidate in candidates]
    distinct = _distinct(candidates, labels)
    structures, requests, failures = _realized(
        distinct, context.seed, potential, generator.candidates, workers, generator.realization
    )
    run = relax_all(structures, potential, settings, workers=workers, hull=hull) if structures else None
    outcomes = [o for o in run.outcomes if o.ok] if run else []
    requests = [request for request, o in zip(requests, run.outcomes if run else [], strict=True) if o.ok]
    for outcome in (run.outcomes if run else []):
        if not outcome.ok:
            failures[(outcome.reason or 'failed').split(' (')[0][:60]] += 1
    rows = hull_rows(outcomes, elemental, apply_mp2020=not potential.includes_mp2020)
    merge_duplicates(rows, [o.structure for o in outcomes], [str(i) for i in range(len(outcomes))])
    core_minutes = (cpu_seconds() - started) / 60
    relaxed_labels, hits, kept_system = set(), {}, {}
    energies, by_request, steps_by_request = [], {}, {}
    for outcome, row, request in zip(outcomes, rows, requests, strict=True):
        if row.e_above_hull is None:
            continue
        energies.append(row.e_above_hull)
        if relaxed is not None:
            relaxed.append({'structure': outcome.structure, 'e_above_hull': row.e_above_hull, 'pruned': row.pruned,
                            'formation_energy_per_atom': row.formation_energy_per_atom, 'potential': row.potential})
        if request:
            by_request[request] = round(row.e_above_hull, 4)
            steps_by_request[request] = outcome.steps
        try:
            label = structure_label(outcome.structure)
        except Exception:  # noqa: BLE001 - a collapsed cell has no label; it still has an energy
            label = f'{row.formula}#{row.index}'
        relaxed_labels.add(label)
        if row.e_above_hull <= 0.1:
            hits.setdefault(label, (round(row.e_above_hull, 3), row.formula))
            if request and '#' not in label:
                kept_system.setdefault(label, (_crystal_system(label) == _crystal_system(request), request))
    generated_labels = set(labels)
    known = set(reference_entries(chemsys)['label'].dropna())
    phases = hull_phases(chemsys)
    found = [p for p in phases if p['label'] and (p['label'] in relaxed_labels or p['label'] in generated_labels)]
    return {
        'generator': generator.name,
        'chemsys': '-'.join(chemsys),
        'samples': len(candidates),
        'distinct': len(distinct),
        'relaxed': len(energies),
        'pruned': sum(o.pruned is not None for o in outcomes),
        'duplicates': sum(row.duplicate_of is not None for row in rows),
        'failures': dict(failures),
        **_hit_rates(len(hits), num_samples, core_minutes),
        'generate_core_seconds': round(generate_seconds, 1),
        'wall_seconds': round(time.perf_counter() - wall, 1),
        'median_e_above_hull': round(float(np.median(energies)), 3) if energies else None,
        'relax_steps_median': float(np.median([o.steps for o in outcomes])) if outcomes else None,
        'relax_steps_mean': round(float(np.mean([o.steps for o in outcomes])), 1) if outcomes else None,
        'hits_crystal_system_kept': round(float(np.mean([kept for kept, _ in kept_system.values()])), 3)
        if kept_system else None,
        'hits_crystal_system_changed': sorted(f'{request} -> {label}' for label, (kept, request) in kept_system.items()
                                              if not kept),
        'hits_new': sum(label not in context.train_labels and label not in known for label in hits),
        'hits_new_prototype': sum(label.split(':')[0] not in context.train_prototypes for label in hits),
        'hit_formulas': [formula for _, formula in sorted(hits.values())],
        'hit_labels': sorted(hits),
        'best': sorted(
            (round(r.e_above_hull, 3), r.formula) for r in rows if r.e_above_hull is not None
        )[:3],
        'hull_phases': len(phases),
        'hull_phases_found': [f'{p["formula"]} ({p["material_id"]}, {p["split"]})' for p in found],
        'hull_phases_train_found': sum(p['split'] == 'train' for p in found),
        'hull_phases_test_found': sum(p['split'] == 'test' for p in found),
        'e_above_hull_by_request': by_request,
        'relax_steps_by_request': steps_by_request,
        'e_above_hull_values': [round(e, 4) for e in energies],
    }


PAIRED_TIE = 0.005
"""eV/atom: paired end points closer than this count as the same (the relaxation's own spread)."""


def paired_comparison(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any] | None:
    """Two generators on the protostructures both relaxed (by requested label): how much lower ``second`` ends.

    Far less noisy than comparing hit counts when two settings differ only in how a protostructure becomes a relaxed
    structure (the realizations per protostructure, K): each pair shares its composition and symmetry."""
    common = sorted(set(first['e_above_hull_by_request']) & set(second['e_above_hull_by_request']))
    if not common:
        return None
    differences = [second['e_above_hull_by_request'][k] - first['e_above_hull_by_request'][k] for k in common]
    hit = 0.1
    return {
        'chemsys': first['chemsys'],
        'generator': second['generator'],
        'against': first['generator'],
        'pairs': len(common),
        'median_difference': round(float(np.median(differences)), 4),
        'mean_difference': round(float(np.mean(differences)), 4),
        'lower': sum(d < -PAIRED_TIE for d in differences),
        'higher': sum(d > PAIRED_TIE for d in differences),
        'hits_only_second': sum(second['e_above_hull_by_request'][k] <= hit < first['e_above_hull_by_request'][k]
                                for k in common),
        'hits_only_first': sum(first['e_above_hull_by_request'][k] <= hit < second['e_above_hull_by_request'][k]
                               for k in common),
        'core_minutes_ratio': round(second['core_minutes'] / first['core_minutes'], 2) if first['core_minutes'] else None,
        **_paired_steps(first, second, common),
    }


def _paired_steps(first: dict[str, Any], second: dict[str, Any], common: list[str]) -> dict[str, Any]:
    """Relaxation steps of the same protostructures (median of each, over the pairs both report), and the same over
    the pairs whose protostructure has a template: where the template method differs from PyXtal at all."""
    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates()
    ours, theirs = first.get('relax_steps_by_request', {}), second.get('relax_steps_by_request', {})
    pairs = [k for k in common if k in ours and k in theirs]
    templated = [k for k in pairs if library.templates_for(k, 1)]
    result: dict[str, Any] = {}
    for name, keys in (('steps', pairs), ('steps_with_template', templated)):
        if keys:
            result[name] = f'{np.median([theirs[k] for k in keys]):.0f} / {np.median([ours[k] for k in keys]):.0f}'
    result['pairs_with_template'] = len(templated)
    return result


def _baseline_of(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a row is paired against: the nearest earlier row that differs only in how the same samples become
    relaxed structures (the ``real`` and ``alpha`` keys: PyXtal against templates, one BFGS setting against
    another), else the first row."""
    def samples_of(name: str) -> str:
        kind, _, options = name.partition(':')
        return kind + ':' + ','.join(o for o in options.split(',') if o.split('=')[0] not in ('real', 'alpha'))

    earlier = rows[:next(i for i, other in enumerate(rows) if other is row)][::-1]
    twins = (other for other in earlier if samples_of(other['generator']) == samples_of(row['generator']))
    return next(twins, rows[0])


def distribution_comparison(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any] | None:
    """Two generators' relaxed e_above_hull distributions, whatever protostructures each proposed: does ``second``
    end lower (the paper's claim for its energy condition)? A two-sided Mann-Whitney U test uses every relaxed
    structure, so it separates settings that hit counts (a few per hundred) cannot."""
    from scipy.stats import mannwhitneyu

    ours, theirs = first.get('e_above_hull_values'), second.get('e_above_hull_values')
    if not ours or not theirs:
        return None
    test = mannwhitneyu(theirs, ours, alternative='two-sided')
    return {
        'chemsys': first['chemsys'],
        'generator': second['generator'],
        'against': first['generator'],
        'relaxed': f'{len(theirs)} / {len(ours)}',
        'median': f'{np.median(theirs):.3f} / {np.median(ours):.3f}',
        'within_0.2': f'{np.mean(np.asarray(theirs) <= 0.2):.3f} / {np.mean(np.asarray(ours) <= 0.2):.3f}',
        'p_lower_or_higher': round(float(test.pvalue), 4),
        'probability_lower': round(1 - float(test.statistic) / (len(theirs) * len(ours)), 3),
    }


def all_sources(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's generators together, as a scan that used every source would be: distinct hits (a structure two
    sources found counts once), samples and core-minutes summed."""
    hits = set().union(*(row['hit_labels'] for row in rows))
    totals = {key: sum(row[key] for row in rows) for key in ('samples', 'distinct', 'relaxed', 'pruned')}
    found_by = Counter(label for row in rows for label in row['hit_labels'])
    return {
        'generator': 'all sources',
        'chemsys': rows[0]['chemsys'],
        **totals,
        **_hit_rates(len(hits), totals['samples'], sum(row['core_minutes'] for row in rows)),
        'hits_in_more_than_one_source': sum(count > 1 for count in found_by.values()),
        'hit_labels': sorted(hits),
        'hull_phases_found': sorted({phase for row in rows for phase in row['hull_phases_found']}),
    }


def scan_spacegroups(chemsys: tuple[str, ...], method: str) -> list[int]:
    """The 20 groups a workflow scan of ``chemsys`` samples (``spacegroups.choose_spacegroups``): the benchmark measures
    what the workflow does, ``chemistry`` by default, the paper's ``top20`` on request."""
    from aiida_wyckoffdiff.spacegroups import choose_spacegroups

    return list(choose_spacegroups(chemsys, 20, method).spacegroups)


def real_reference(context: Context, chemsys: tuple[str, ...], spacegroups: list[int]) -> dict[str, Any]:
    """What real crystals score on the system level's measures: the test split's crystals with as many elements as
    ``chemsys`` in ``spacegroups`` (a generated sample is compared with the crystals it could have been); plausible
    compositions among those that are ionic as ``chemsys`` is or is not (``metrics.ionic_system``), since charge
    balance says little of carbides and silicides."""
    from aiida_wyckoffdiff.metrics import composition_plausible, ionic_system
    from aiida_wyckoffdiff.templates import arrangement_of

    frame = context.frame
    test = frame[(frame['split'] == 'test') & (frame['chemsys'].str.count('-') == len(chemsys) - 1)]
    test = test[test['spacegroup'].isin(spacegroups)]
    if test.empty:
        return {'real_crystals': 0}
    prototypes = test['label'].str.split(':').str[0]
    alike = test[[ionic_system(system.split('-')) == ionic_system(chemsys) for system in test['chemsys']]]
    formulas = {_formula(label) for label in alike['label']}
    return {
        'real_crystals': len(test),
        'real_training_prototype': round(float(prototypes.isin(context.train_prototypes).mean()), 3),
        'real_training_arrangement': round(float(np.mean([arrangement_of(label) in context.train_arrangements
                                                          for label in test['label']])), 3),
        'real_plausible': round(float(np.mean([composition_plausible(f) for f in formulas])), 3) if formulas else None,
        'real_atoms_median': float(test['num_atoms'].median()),
    }


def system_level(
    context: Context, generator: Generator, chemsys: tuple[str, ...], num_samples: int, spacegroups: list[int]
) -> dict[str, Any]:
    """Whether the samples of one system look like crystals, before anything is relaxed: of the distinct samples, the
    share whose element-free prototype (label before ``:``) a training crystal has, the share identical to a training
    crystal (so that copying cannot pass for realism), plausible compositions (``metrics.composition_plausible``:
    oxides, alkali and alkaline-earth peroxides and superoxides, mixed valence; alloys pass), and the median cell beside the real crystals'."""
    from aiida_wyckoffdiff.metrics import composition_plausible
    from aiida_wyckoffdiff.templates import arrangement_of

    started = cpu_seconds()
    samples, failed = context.generate(generator, chemsys, spacegroups, num_samples, context.seed)
    labels = [label for label in map(_label, samples) if label]
    distinct = sorted(set(labels))
    formulas = {_formula(label) for label in distinct}
    share = lambda hits: round(hits / len(distinct), 3) if distinct else None  # noqa: E731 - one-line ratio
    return {
        'generator': generator.name,
        'chemsys': '-'.join(chemsys),
        'samples': len(labels),
        'failed_slots': failed,
        'distinct': len(distinct),
        'training_prototype': share(sum(label.split(':')[0] in context.train_prototypes for label in distinct)),
        'identical_to_training': share(sum(label in context.train_labels for label in distinct)),
        'novel_prototype': share(sum(label.split(':')[0] not in context.train_prototypes for label in distinct)),
        'training_arrangement': share(sum(arrangement_of(label) in context.train_arrangements for label in distinct)),
        'plausible': round(float(np.mean([composition_plausible(f) for f in formulas])), 3) if formulas else None,
        'distinct_compositions': len(formulas),
        'atoms_median': float(np.median([_counts(label)[0] for label in labels])) if labels else None,
        'cpu_seconds': round(cpu_seconds() - started, 1),
        **real_reference(context, chemsys, spacegroups),
    }


def _formula(label: str) -> str:
    from aiida_wyckoffdiff.symmetry import Protostructure

    return Protostructure.from_label(label).composition.reduced_formula


def test_only_systems(context: Context, count: int, arity: int = 2) -> list[tuple[str, ...]]:
    """Systems of ``arity`` elements whose structured MP rows all lie in the test split and whose hull has a labelled
    compound: chemistry no setting was tuned on, largest first."""
    rows = context.frame[context.frame['chemsys'].str.count('-') == arity - 1]
    splits = rows.groupby('chemsys')['split'].agg(set)
    sizes = rows.groupby('chemsys').size()
    from aiida_wyckoffdiff.references import elements_with_references

    usable = elements_with_references(context.checkpoint.model_config.elements)
    chosen: list[tuple[str, ...]] = []
    for chemsys in sizes.sort_values(ascending=False).index:
        if len(chosen) >= count:
            break
        elements = tuple(chemsys.split('-'))
        if splits[chemsys] != {'test'} or not set(elements) <= usable:
            continue
        if any(p['label'] for p in hull_phases(elements)):
            chosen.append(elements)
    return chosen


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print('| ' + ' | '.join(columns) + ' |')
    print('|' + '---|' * len(columns))
    for row in rows:
        print('| ' + ' | '.join(str(row.get(column, '')) for column in columns) + ' |', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='A CI-size run: 3 requests, 4 samples of Li-O, 5 steps.')
    parser.add_argument(
        '--levels', nargs='+', default=['generation', 'system', 'outcome'], choices=['generation', 'system', 'outcome']
    )
    parser.add_argument('--generation', nargs='+', help='Generators at the generation level [default: the sweep].')
    parser.add_argument('--outcome', nargs='+', help='Generators at the outcome level [default: see code].')
    parser.add_argument('--system', nargs='+', help='Generators of the system level [default: the outcome ones].')
    parser.add_argument('--requests', type=int, default=40)
    parser.add_argument('--per-request', type=int, default=8)
    parser.add_argument('--systems', nargs='+', default=['Li-O', 'Ti-O'])
    parser.add_argument('--test-only-systems', type=int, nargs='+', default=[1], metavar='N',
                        help='Systems no setting was tuned on, per arity: N binaries [N ternaries [N quaternaries]].')
    parser.add_argument('--spacegroup-choice', choices=['chemistry', 'top20'], default='chemistry',
                        help="The 20 groups each system samples, chosen as the workflow does ('top20': the paper's).")
    parser.add_argument('--system-samples', type=int, default=160, help='Samples per system of the system level.')
    parser.add_argument('--samples', type=int, default=40, help='Samples per system and generator (outcome level).')
    parser.add_argument('--relax-steps', type=int, default=150, help='Steps per stage of the staged relaxation.')
    parser.add_argument('--free', action='store_true', help='Free relaxation without pruning (the old protocol).')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--dataset', type=Path, help='Dataset file [default: the cache; built when absent].')
    parser.add_argument('--data-dir', type=Path, help='The shared MP data folder [default: ../shared/data].')
    parser.add_argument('--output', type=Path, help='Results file [default: benchmarks/discovery_results.json; with '
                        '--quick discovery_quick.json in the temporary folder, so a quick run never overwrites the '
                        'committed results].')
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.requests, arguments.per_request, arguments.samples, arguments.system_samples = 3, 2, 4, 4
        arguments.systems, arguments.test_only_systems, arguments.relax_steps = ['Li-O'], [0], 5
        arguments.workers = 1
    if arguments.output is None:
        quick = Path(tempfile.gettempdir()) / 'discovery_quick.json'
        arguments.output = quick if arguments.quick else ROOT / 'benchmarks' / 'discovery_results.json'
    generation = arguments.generation or (
        ['model:g=2,guided=e_above_hull', TODAY, 'random', 'substitution']
        if arguments.quick
        else [
            TODAY,
            'model:g=2,guided=e_above_hull',
            'random',
            'substitution',
            'base',
            'model:g=1,guided=all',
            'model:g=0.5,guided=all',
            'model:g=1,guided=e_above_hull',
            'model:g=2,guided=e_above_hull,plausible=1',
            'model:g=2,guided=spacegroup+e_above_hull',
            'model:g=0.25,guided=all',
            'model:g=4,guided=e_above_hull',
            'model:g=2,guided=e_above_hull,e=0.3',
            'model:g=2,guided=e_above_hull,steps=50',
            'model:g=2,guided=e_above_hull,steps=200',
        ]
    )
    outcome = arguments.outcome or (
        ['model:g=2,guided=e_above_hull', 'model:g=2,guided=e_above_hull,real=template', 'random', 'substitution']
        if arguments.quick
        else [TODAY, 'model:g=2,guided=e_above_hull', 'model:g=2,guided=e_above_hull,plausible=1', 'random', 'substitution']
    )
    load = os.getloadavg()
    print(f'load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}', flush=True)
    context = Context(arguments.seed, arguments.dataset, arguments.data_dir)
    document: dict[str, Any] = {
        'command': ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        'checkpoint_sha256': context.checkpoint.sha256,
        'load_average_start': load,
        'settings': {k: str(v) for k, v in vars(arguments).items()},
    }

    if 'generation' in arguments.levels:
        from evaluate import held_out_requests  # benchmarks/evaluate.py: the model card's held-out requests

        requests = held_out_requests(
            context.frame, arguments.requests, context.seed, context.checkpoint.model_config.elements
        )
        rows = []
        for name in generation:
            rows.append(generation_level(context, as_generator(name), requests, arguments.per_request))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            document['generation'] = rows
            arguments.output.write_text(json.dumps(document, indent=1) + '\n')  # a stopped run keeps its rows
        print(f'\n## Generation level: {len(requests)} held-out requests x {arguments.per_request} samples\n')
        print_table(
            rows,
            ['generator', 'samples', 'failed_slots', 'recovered', 'recall', 'atoms_median', 'atoms_wasserstein',
             'orbits_median', 'orbits_wasserstein', 'elements_js', 'smact_valid', 'plausible', 'unique', 'novel',
             'cpu_seconds'],
        )
    systems = [tuple(system.split('-')) for system in arguments.systems]
    for arity, count in enumerate(arguments.test_only_systems, start=2):
        systems += test_only_systems(context, count, arity)
    document['systems'] = ['-'.join(system) for system in systems]
    spacegroups = {system: scan_spacegroups(system, arguments.spacegroup_choice) for system in systems}
    if 'system' in arguments.levels:
        rows = []
        for system in systems:
            for name in arguments.system or outcome:
                rows.append(system_level(context, as_generator(name), system, arguments.system_samples, spacegroups[system]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                document['system'] = rows
                arguments.output.write_text(json.dumps(document, indent=1) + '\n')
        print(f'\n## System level: {arguments.system_samples} samples per system over its 20 '
              f'{arguments.spacegroup_choice} space groups; real: the test split of the same arity in those groups\n')
        print_table(
            rows,
            ['chemsys', 'generator', 'samples', 'failed_slots', 'distinct', 'training_prototype', 'real_training_prototype',
             'identical_to_training', 'novel_prototype', 'plausible', 'real_plausible', 'distinct_compositions',
             'atoms_median', 'real_atoms_median', 'cpu_seconds'],
        )
    if 'outcome' in arguments.levels:
        from aiida_wyckoffdiff.potentials import load_potential
        from aiida_wyckoffdiff.relax import STAGED

        settings = replace(STAGED, steps=arguments.relax_steps)
        if arguments.free:
            settings = replace(settings, fix_symmetry=False, prune_above=None)
        potential = load_potential('chgnet')
        elemental = elemental_references(potential, systems)
        rows = []
        for system in systems:
            for name in outcome:
                rows.append(
                    outcome_level(context, as_generator(name), system, arguments.samples, potential, settings,
                                  elemental, arguments.workers, spacegroups[system])
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                document['outcome'] = rows
                arguments.output.write_text(json.dumps(document, indent=1) + '\n')
            if len(outcome) > 1:
                system_rows = rows[-len(outcome):]
                substitution = [set(row['hit_labels']) for row in system_rows if row['generator'] == 'substitution']
                for row in system_rows:
                    if substitution and row['generator'] != 'substitution':
                        row['hits_not_by_substitution'] = len(set(row['hit_labels']) - substitution[0])
                rows.append(all_sources(system_rows))
                pairs = [paired_comparison(_baseline_of(row, system_rows), row) for row in system_rows[1:]]
                document.setdefault('paired', []).extend(pair for pair in pairs if pair)
                shifts = [distribution_comparison(system_rows[0], row) for row in system_rows[1:]]
                document.setdefault('distributions', []).extend(shift for shift in shifts if shift)
        document['outcome'] = rows
        protocol = 'free' if arguments.free else 'staged, pruned'
        print(f'\n## Outcome level: {arguments.samples} samples per system, CHGNet {protocol}, '
              f'{arguments.relax_steps} steps a stage\n')
        print_table(
            rows,
            ['chemsys', 'generator', 'samples', 'distinct', 'relaxed', 'pruned', 'hits', 'hits_interval_90', 'hits_per_100_samples',
             'core_minutes', 'hits_per_core_minute', 'median_e_above_hull', 'relax_steps_mean', 'hits_crystal_system_kept',
             'hits_new', 'hits_new_prototype', 'hits_not_by_substitution', 'hull_phases_found', 'hit_formulas'],
        )
        if document.get('paired'):
            print(f'\n## Paired: the same protostructures against the first generator of each system (eV/atom; '
                  f'lower/higher by more than {PAIRED_TIE})\n')
            print_table(
                document['paired'],
                ['chemsys', 'generator', 'against', 'pairs', 'median_difference', 'mean_difference', 'lower', 'higher',
                 'hits_only_second', 'hits_only_first', 'core_minutes_ratio', 'steps', 'pairs_with_template',
                 'steps_with_template'],
            )
        if document.get('distributions'):
            print('\n## Relaxed e_above_hull distributions against the first generator of each system (this / first; '
                  'probability_lower: that a structure of this generator ends below one of the first)\n')
            print_table(
                document['distributions'],
                ['chemsys', 'generator', 'against', 'relaxed', 'median', 'within_0.2', 'p_lower_or_higher',
                 'probability_lower'],
            )
    document['load_average_end'] = os.getloadavg()
    arguments.output.write_text(json.dumps(document, indent=1) + '\n')
    print(f'\nwrote {arguments.output}; load average at end: {document["load_average_end"]}')


if __name__ == '__main__':
    main()
