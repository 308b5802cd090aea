"""Rounds benchmark: does fine-tuning on the workflow's own relaxations make the e_above_hull condition steer, and
does the second round find more near-hull structures per core-minute than the first, the fine-tuning's CPU counted?

Per chemical system, in one process, with one seed, the same space groups and the discovery benchmark's outcome level
(``benchmarks/discovery.py``: generate, realize, relax with CHGNet, place on the Materials Project hull):

1. **round 1**: the shipped checkpoint at e_above_hull 0 (and at the other ``--targets``: the condition *before*);
2. **fine-tuning**: round 1's relaxed structures become rows as the rounds work chain makes them
   (``relaxation_rows.relaxed_row``, the lowest e_above_hull per protostructure label, pruned relaxations left out),
   mixed with the dataset's rows (``data.mix_rows``, ``--dataset-share``), and the shipped checkpoint is fine-tuned
   ``--epochs`` more epochs on them; its CPU time is counted;
3. **round 2**: the fine-tuned checkpoint at every target (the condition *after*), once per ``--round-2`` variant:
   ``even`` (every group as many samples, round 1's protostructures allowed again), ``allocated`` (each target's
   samples shared among the groups by round 1's relaxations, ``spacegroups.allocate_samples``), and either with
   ``+new`` (no protostructure round 1 relaxed, ``GenerationRequest.exclude``), as the rounds work chain does;
   with ``--energy-screen N ...`` once per factor of samples the fine-tuned energy head screens
   (``SamplingConfig.energy_screen``; the rounds work chain's protocols use 3);
4. random search beside them, as the anchor.

Reported per system: hits (distinct relaxed structures within 0.1 eV/atom of the MP hull) and hits per core-minute of
every arm, round 2's with the fine-tuning's core-minutes added, round 2's hits that round 1 did not find (and those
per core-minute), the median
relaxed e_above_hull per target and the one-sided Mann-Whitney p that target 0 ends lower than the highest target,
before and after fine-tuning.

    python benchmarks/rounds.py [--quick] [--systems Ti-O Cu-Nb-O] [--samples 96] [--epochs 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from discovery import (  # benchmarks/discovery.py
    ROOT,
    Context,
    as_generator,
    cpu_seconds,
    elemental_references,
    outcome_level,
    scan_spacegroups,
)

MODEL = 'model:g=2,guided=e_above_hull,real=template'
"""The workflow's sampling and realization defaults, as the discovery benchmark names them."""
VARIANTS = ('even', 'allocated', 'even+new', 'allocated+new')


def finetuning_rows(relaxed: list[dict[str, Any]], chemsys: str) -> list[dict[str, Any]]:
    """Rows of the relaxed structures as the rounds work chain makes them: pruned ones and those without symmetry left
    out, the lowest e_above_hull per protostructure label."""
    from aiida_wyckoffdiff.exceptions import ProtostructureError
    from aiida_wyckoffdiff.relaxation_rows import lowest_per_label, relaxed_row

    rows = []
    for index, item in enumerate(relaxed):
        if item['pruned']:
            continue
        try:
            rows.append(relaxed_row(item['structure'], material_id=f'round1-{chemsys}-{index}',
                                    e_above_hull=item['e_above_hull'], potential=item['potential'],
                                    formation_energy_per_atom=item['formation_energy_per_atom']))
        except ProtostructureError:
            continue
    return lowest_per_label(rows)


def finetune_on(
    context: Context, rows: list[dict[str, Any]], output: Path, epochs: int, dataset_share: float, val_rows: int
) -> dict[str, Any]:
    """Fine-tune the shipped checkpoint ``epochs`` more epochs on ``rows`` mixed with the dataset, as a round of the
    rounds work chain does (``training.finetune_on_new_rows``); its CPU time."""
    import pandas as pd

    from aiida_wyckoffdiff.model.checkpoint import shipped_checkpoint_path
    from aiida_wyckoffdiff.model.training import finetune_on_new_rows

    started, wall = cpu_seconds(), time.perf_counter()
    mixed, _, _ = finetune_on_new_rows(context.frame, pd.DataFrame(rows), shipped_checkpoint_path(), output,
                                       epochs=epochs, dataset_share=dataset_share, val_rows=val_rows, seed=context.seed)
    return {
        'rows': len(rows),
        'training_rows': int((mixed['split'] == 'train').sum()),
        'epochs': epochs,
        'dataset_share': dataset_share,
        'core_minutes': round((cpu_seconds() - started) / 60, 2),
        'wall_seconds': round(time.perf_counter() - wall, 1),
        'rows_e_above_hull_quartiles': [round(float(q), 3) for q in np.quantile([r['e_above_hull'] for r in rows],
                                                                                [0.25, 0.5, 0.75])],
    }


def condition_effect(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """Medians of two targets' relaxed e_above_hull and the one-sided Mann-Whitney p that the low target ends lower."""
    from scipy.stats import mannwhitneyu

    first, second = low['e_above_hull_values'], high['e_above_hull_values']
    return {
        'targets': [low['target'], high['target']],
        'medians': [low['median_e_above_hull'], high['median_e_above_hull']],
        'median_difference': round(high['median_e_above_hull'] - low['median_e_above_hull'], 3),
        'p_low_ends_lower': float(mannwhitneyu(first, second, alternative='less').pvalue),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='A CI-size run: Li-O, 4 samples, 5 steps, 1 epoch.')
    parser.add_argument('--systems', nargs='+', default=['Ti-O', 'Cu-Nb-O'])
    parser.add_argument('--samples', type=int, default=96, help='Samples per arm.')
    parser.add_argument('--targets', type=float, nargs='+', default=[0.0, 0.1, 0.3],
                        help='e_above_hull, eV/atom: 0 and, to measure the condition, a higher one.')
    parser.add_argument('--before-targets', type=float, nargs='+', default=[0.0, 0.3],
                        help='The targets sampled from the shipped checkpoint (0 is round 1).')
    parser.add_argument('--epochs', type=int, default=20, help='Fine-tuning epochs beyond the shipped checkpoint.')
    parser.add_argument('--dataset-share', type=float, default=0.8)
    parser.add_argument('--val-rows', type=int, default=256)
    parser.add_argument('--no-random', action='store_true', help='Leave random search out (measured in another run).')
    parser.add_argument('--energy-guidance', type=float, nargs='+', metavar='WEIGHT',
                        help='Round 2 once per weight of the fine-tuned energy head (SamplingConfig.energy_guidance; 0: '
                        'the adapter alone) [default: the sampling default].')
    parser.add_argument('--energy-screen', type=int, nargs='+', metavar='FACTOR',
                        help='Round 2 once per factor of samples the fine-tuned energy head screens '
                        '(SamplingConfig.energy_screen; 1: no screen) [default: the sampling default].')
    parser.add_argument('--round-2', nargs='+', choices=VARIANTS, default=['even'], metavar='VARIANT',
                        help=f'Round 2 once per variant, side by side: {", ".join(VARIANTS)} (this docstring).')
    parser.add_argument('--relax-steps', type=int, default=150)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--dataset', type=Path, help='Dataset file [default: the cache; built when absent].')
    parser.add_argument('--data-dir', type=Path, help='The shared MP data folder [default: ../shared/data].')
    parser.add_argument('--output', type=Path, help='Results file [default: benchmarks/rounds_results.json; with '
                        '--quick rounds_quick.json in the temporary folder].')
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.systems, arguments.samples, arguments.relax_steps, arguments.epochs = ['Li-O'], 4, 5, 1
        arguments.targets, arguments.before_targets, arguments.val_rows = [0.0, 0.3], [0.0], 16
    if 0.0 not in arguments.before_targets:
        raise SystemExit('--before-targets must include 0: that arm is round 1, whose relaxations are learned from')
    if 0.0 not in arguments.targets:
        raise SystemExit('--targets must include 0: round 2 at target 0 is compared with round 1')
    if arguments.output is None:
        quick = Path(tempfile.gettempdir()) / 'rounds_quick.json'
        arguments.output = quick if arguments.quick else ROOT / 'benchmarks' / 'rounds_results.json'

    from aiida_wyckoffdiff.model.config import SamplingConfig
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import STAGED
    from aiida_wyckoffdiff.spacegroups import allocate_samples
    from aiida_wyckoffdiff.symmetry import Protostructure

    weights = arguments.energy_guidance or [SamplingConfig.energy_guidance]
    screens = arguments.energy_screen or [SamplingConfig.energy_screen]
    load = os.getloadavg()
    print(f'load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}', flush=True)
    context = Context(arguments.seed, arguments.dataset, arguments.data_dir)
    systems = [tuple(system.split('-')) for system in arguments.systems]
    potential = load_potential('chgnet')
    settings = replace(STAGED, steps=arguments.relax_steps)
    elemental = elemental_references(potential, systems)
    document: dict[str, Any] = {
        'command': ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        'checkpoint_sha256': context.checkpoint.sha256,
        'load_average_start': load,
        'settings': {k: str(v) for k, v in vars(arguments).items()},
        'systems': {},
    }
    folder = Path(tempfile.mkdtemp(prefix='rounds-'))

    def arm(name: str, system: tuple[str, ...], relaxed: list | None = None, spacegroups: list[int] | None = None,
            exclude: frozenset[str] = frozenset(), **extra: Any) -> dict[str, Any]:
        row = outcome_level(context, as_generator(name), system, arguments.samples, potential, settings, elemental,
                            arguments.workers, spacegroups or scan_spacegroups(system, 'chemistry'), relaxed=relaxed,
                            exclude=exclude)
        row.update(extra)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith(('_values', '_by_request'))}),
              file=sys.stderr, flush=True)
        return row

    for system in systems:
        chemsys = '-'.join(system)
        result: dict[str, Any] = {'arms': []}
        document['systems'][chemsys] = result
        relaxed: list[dict[str, Any]] = []
        before = {}
        for target in arguments.before_targets:
            name = MODEL if target == 0 else f'{MODEL},e={target}'
            before[target] = arm(name, system, relaxed if target == 0 else None, round=1, target=target)
            result['arms'].append(before[target])
        rows = finetuning_rows(relaxed, chemsys)
        checkpoint = folder / f'round2-{chemsys}.pt'
        result['finetune'] = finetune_on(context, rows, checkpoint, arguments.epochs, arguments.dataset_share,
                                         arguments.val_rows)
        result['rows'] = rows  # what round 2 learned from, to fine-tune again with other settings
        print(json.dumps(result['finetune']), file=sys.stderr, flush=True)
        outcomes = [(Protostructure.from_label(label).spacegroup, energy)
                    for label, energy in before[0.0]['e_above_hull_by_request'].items()]
        relaxed_before = frozenset(before[0.0]['e_above_hull_by_request'])
        by_variant = {}
        for weight, screen, variant in itertools.product(weights, screens, arguments.round_2):
            key = ','.join([str(weight)] + ([f'es={screen}'] if arguments.energy_screen else [])
                           + ([variant] if variant != 'even' else []))
            after = by_variant[key] = {}
            for target in arguments.targets:
                allocation = allocate_samples(scan_spacegroups(system, 'chemistry'), outcomes, arguments.samples,
                                              target) if variant.startswith('allocated') else None
                after[target] = arm(f'{MODEL},e={target},eg={weight},es={screen},ckpt={checkpoint}', system,
                                    spacegroups=list(allocation.spacegroups) if allocation else None,
                                    exclude=relaxed_before if variant.endswith('+new') else frozenset(), round=2,
                                    target=target, energy_guidance=weight, energy_screen=screen, variant=variant,
                                    allocation=allocation.as_report() if allocation else None)
                result['arms'].append(after[target])
        if not arguments.no_random:
            result['arms'].append(arm('random:real=template', system, round=None, target=None))
        first = before[0.0]
        low, high = min(arguments.targets), max(arguments.targets)
        result['round_2_against_round_1'], result['condition_after'] = {}, {}
        for variant, after in by_variant.items():
            second = after[0.0]
            with_finetune = second['core_minutes'] + result['finetune']['core_minutes']
            new = len(set(second['hit_labels']) - set(first['hit_labels']))
            result['round_2_against_round_1'][variant] = {
                'hits': [first['hits'], second['hits']],
                'hits_per_core_minute': [first['hits_per_core_minute'], round(second['hits'] / with_finetune, 3)],
                'ratio_finetune_counted': round(second['hits'] / with_finetune / first['hits_per_core_minute'], 2)
                if first['hits'] else None,
                'round_2_hits_not_in_round_1': new,
                'ratio_new_hits_finetune_counted': round(new / with_finetune / first['hits_per_core_minute'], 2)
                if first['hits'] else None,
            }
            result['condition_after'][variant] = condition_effect(after[low], after[high]) if high > low else None
        result['condition_before'] = (condition_effect(before[min(before)], before[max(before)]) if len(before) > 1
                                      else None)
        print(json.dumps({k: v for k, v in result.items() if k not in ('arms', 'rows')}), flush=True)
        arguments.output.write_text(json.dumps(document, indent=1) + '\n')  # a stopped run keeps its systems
    print(f'wrote {arguments.output}')


if __name__ == '__main__':
    main()
