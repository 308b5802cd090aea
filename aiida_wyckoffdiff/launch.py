"""Builders and a runner for the phase-diagram workflow, shared by the examples and the main job."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from aiida import orm

__all__ = ['phase_diagram_builder', 'run_phase_diagram_example', 'run_rounds_example', 'scan_summary']


def phase_diagram_builder(
    chemsys: str,
    *,
    code: str = 'wyckoffdiff@localhost',
    protocol: str | None = None,
    spacegroups: list[int] | None = None,
    spacegroup_choice: str | None = None,
    num_samples: int | None = None,
    e_above_hull: float | None = None,
    relaxer: str | None = None,
    model_checkpoint: str | Path | None = None,
    relax_checkpoint: str | Path | None = None,
    relax_settings: dict[str, Any] | None = None,
    structures_per_job: int | None = None,
    seed: int | None = None,
) -> Any:
    """``PhaseDiagramWorkChain.get_builder_from_protocol`` with the common overrides as keywords (``None``: the
    protocol's value).

    :param relax_settings: over the protocol's staged relaxation; ``{'optimizer': 'FIRE', 'fix_symmetry': False,
        'prune_above': None}`` is the free relaxation without pruning of earlier versions.
    :param structures_per_job: structures per relax job; ``None``: as many as fill this machine's cores in one wave
        of jobs (64 on a cluster). The work chain runs as many jobs at once as its memory and cores allow.
    """
    from .workchains.phase_diagram import PhaseDiagramWorkChain

    given = {'spacegroups': spacegroups, 'spacegroup_choice': spacegroup_choice, 'num_samples': num_samples, 'e_above_hull': e_above_hull, 'seed': seed,
             'structures_per_job': structures_per_job}
    overrides: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    relax = {'relaxer': relaxer} if relaxer else {}
    if relax_settings:
        relax['settings'] = relax_settings  # as given: a None in it (prune_above) means "off"
    if relax:
        overrides['relax'] = relax
    return PhaseDiagramWorkChain.get_builder_from_protocol(
        code, chemsys, protocol, overrides, model_checkpoint=model_checkpoint, relax_checkpoint=relax_checkpoint
    )


def scan_summary(rows: list[dict[str, Any]], realization: list[dict[str, Any]], hull_keys: set[str]) -> dict[str, Any]:
    """What a finished scan made, in numbers: the ``summary`` the examples write with ``--summary`` (docs/results/).

    :param rows: the workflow's ``table`` output (a row per generated structure).
    :param realization: its ``realization`` output (a row per distinct protostructure).
    :param hull_keys: the keys of its ``hull_structures``, the distinct structures within the hull tolerance.
    """
    failed = [row for row in rows if row['e_above_hull'] is None]
    near = sorted((row for row in rows if row['key'] in hull_keys), key=lambda row: row['e_above_hull'])
    return {
        'protostructures': len(realization),
        'realized': sum(1 for entry in realization if entry['ok']),
        'relaxed': len(rows) - len(failed),
        'pruned': sum(1 for row in rows if row['pruned']),
        'failed': len(failed),
        'hull_structures': [
            {'formula': row['formula'], 'e_above_hull': round(row['e_above_hull'], 3),
             'spacegroup': row['spacegroup_found']}
            for row in near
        ],
    }


def run_phase_diagram_example(
    chemsys: str, argv: list[str] | None = None, results: Path = Path('results'), score: bool = False
) -> orm.WorkChainNode:
    """Parse the example's options, run the workflow, copy its plots to ``results/CHEMSYS`` and say what to look at.

    :param score: also score the run (:func:`aiida_wyckoffdiff.reporting.scan_report`: validity, uniqueness,
        novelty, S.U.N., symmetry kept, known phases found), print it and write ``metrics.json`` beside the plots.
    """
    from aiida.engine import run_get_node

    from .workchains.phase_diagram import PhaseDiagramWorkChain

    parser = argparse.ArgumentParser(description=f'{chemsys} phase diagram with aiida-wyckoffdiff')
    parser.add_argument('--protocol', choices=list(PhaseDiagramWorkChain.get_available_protocols()),
                        default=PhaseDiagramWorkChain.get_default_protocol(),
                        help='fast (2 per space group), balanced (16), paper (64 in the fixed top 20 groups: 1280 in all) or discovery (the paper budget split between model, random search and substitution); default fast.')
    parser.add_argument('--samples', type=int, help="Protostructures per space group (default: the protocol's).")
    parser.add_argument('--spacegroup', type=int, action='append',
                        help='Scan these space groups (default: 20 chosen by --spacegroup-choice).')
    parser.add_argument('--spacegroup-choice', choices=['chemistry', 'top20'],
                        help="chemistry: groups of training crystals of similar elements; top20: the 20 most frequent, "
                             "the paper's scan (protocol: chemistry, paper: top20).")
    parser.add_argument('--relaxer', help='mattersim, chgnet or sevenn (protocol: chgnet, which works offline).')
    parser.add_argument('--relax-checkpoint', help='Weights of the potential (required for mattersim without internet).')
    parser.add_argument('--steps', type=int, help="Optimizer steps at most per structure and stage (protocol: 150).")
    parser.add_argument('--fmax', type=float, help="Force criterion in eV/Å (protocol: 0.1).")
    parser.add_argument('--free', action='store_true',
                        help='Relax freely with FIRE, without pruning, as before the staged protocol (docs/relaxation.md).')
    parser.add_argument('--structures-per-job', type=int, help="Structures per relax job (default: one wave of jobs over this machine's cores; 64 on a cluster).")
    parser.add_argument('--seed', type=int)
    parser.add_argument('--output', type=Path, default=results / chemsys)
    parser.add_argument('--summary', type=Path,
                        help='Also write what the run made (wall time, counts, hull structures, plots) as JSON here; '
                             'scripts/readme_figures.py puts docs/results/make_run.json into the README.')
    options = parser.parse_args(argv)
    settings = {key: value for key, value in (('steps', options.steps), ('fmax', options.fmax)) if value is not None}
    if options.free:
        settings.update(optimizer='FIRE', fix_symmetry=False, prune_above=None)
    builder = phase_diagram_builder(
        chemsys,
        protocol=options.protocol,
        spacegroups=options.spacegroup,
        spacegroup_choice=options.spacegroup_choice,
        num_samples=options.samples,
        relaxer=options.relaxer,
        relax_checkpoint=options.relax_checkpoint,
        relax_settings=settings,
        structures_per_job=options.structures_per_job,
        seed=options.seed,
    )
    load_average, start = os.getloadavg()[0], time.monotonic()
    _, node = run_get_node(builder)
    wall_seconds = time.monotonic() - start
    if not node.is_finished_ok:
        raise SystemExit(f'PhaseDiagramWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    options.output.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, plot in node.outputs.plots.items():
        target = options.output / plot.filename
        with plot.open(mode='rb') as source, open(target, 'wb') as handle:
            shutil.copyfileobj(source, handle)
        plots.append(target)
        print(f'plot {name}: {target}')
    table_file = options.output / 'table.json'
    table_file.write_text(json.dumps({'workchain': node.pk, 'rows': node.outputs.table.get_list()}, indent=1))
    print(f'table: {table_file}')
    hull = dict(node.outputs.hull_structures.items()) if 'hull_structures' in node.outputs else {}
    for row in node.outputs.table.get_list():
        energy = 'failed: ' + str(row['reason']) if row['e_above_hull'] is None else f"e_above_hull {row['e_above_hull']:+.3f} eV/atom"
        energy += ' (pruned)' if row['pruned'] else f" (same structure as {row['duplicate_of']})" if row['duplicate_of'] else ''
        print(f"  {row['key']}: {row['formula']:>8} requested {row['spacegroup_requested']}, found {row['spacegroup_found']}, {energy}")
    print(f'PhaseDiagramWorkChain<{node.pk}> finished: {len(hull)} hull structures (group wyckoffdiff/{chemsys})')
    for key, structure in sorted(hull.items()):
        print(f'  {key}: StructureData<{structure.pk}> {structure.get_formula()}')
    if hull:
        first = next(iter(hull.values()))
        print(f'provenance: wyckoffdiff lineage {first.pk}   |   verdi node graph generate {node.pk}')
    if options.summary:
        summary = {
            'date': datetime.date.today().isoformat(),
            'chemsys': chemsys,
            'protocol': options.protocol,
            'cores': len(os.sched_getaffinity(0)),
            'load_average_at_start': round(load_average, 2),
            'load_average_at_end': round(os.getloadavg()[0], 2),
            'workflow_seconds': round(wall_seconds),
            'hull_tolerance': node.inputs.hull_tolerance.value,
            **scan_summary(node.outputs.table.get_list(), node.outputs.realization.get_list(), set(hull)),
            'plots': sorted(path.as_posix() for path in plots),
        }
        options.summary.parent.mkdir(parents=True, exist_ok=True)
        options.summary.write_text(json.dumps(summary, indent=1) + '\n')
        print(f'summary: {options.summary}')
    if score:
        from .reporting import format_report, scan_report

        report = scan_report(node)
        (options.output / 'metrics.json').write_text(json.dumps(report, indent=1))
        print(format_report(report), end='')
    return node


def run_rounds_example(chemsys: str, argv: list[str] | None = None) -> orm.WorkChainNode:
    """Parse the example's options, run rounds of scan and fine-tuning (``wyckoffdiff.rounds``) with caching on, so
    that running it again relaxes nothing twice, and print the per-round table and what to trace."""
    import contextlib

    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching

    from .provenance import structures_of
    from .workchains.rounds import RoundsWorkChain

    parser = argparse.ArgumentParser(description=f'{chemsys}: rounds of generate -> relax -> hull -> fine-tune')
    parser.add_argument('--protocol', choices=list(RoundsWorkChain.get_available_protocols()),
                        default=RoundsWorkChain.get_default_protocol(), help='Rounds protocol (default fast).')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--samples', type=int, default=1, help='Protostructures per space group and round (default 1).')
    parser.add_argument('--spacegroup-count', type=int, default=8,
                        help='Space groups chosen for the chemistry (default 8: with --samples 1, 8 samples a round).')
    parser.add_argument('--epochs', type=int, help="Extra fine-tuning epochs per round (protocol: 1).")
    parser.add_argument('--dataset-share', type=float,
                        help='Share of dataset rows among the training rows (protocol: 0.8).')
    parser.add_argument('--dataset', type=Path, help='Dataset file (default: the cache of `wyckoffdiff data build`).')
    parser.add_argument('--no-caching', action='store_true', help='Run every job again, even where its outputs exist.')
    options = parser.parse_args(argv)
    finetune = {key: value for key, value in (('epochs', options.epochs), ('dataset_share', options.dataset_share))
                if value is not None}
    run = {'num_samples': options.samples, 'spacegroup_count': options.spacegroup_count}
    overrides: dict[str, Any] = {'rounds': options.rounds, 'phase_diagram': run}
    if finetune:
        overrides['finetune'] = finetune
    builder = RoundsWorkChain.get_builder_from_protocol('wyckoffdiff@localhost', chemsys, options.protocol, overrides,
                                                        dataset=options.dataset)
    with contextlib.nullcontext() if options.no_caching else enable_caching():
        _, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'RoundsWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    for row in node.outputs.rounds.get_list():
        median = 'n/a' if row['median_e_above_hull'] is None else f"{row['median_e_above_hull']:+.3f}"
        print(f"round {row['round']}: PhaseDiagramWorkChain<{row['run_pk']}> from "
              f"CheckpointData<{row['checkpoint_pk']}>: "
              f"{row['hits']} of {row['relaxed']} relaxed within {row['hull_tolerance']} eV/atom, median e_above_hull "
              f"{median} eV/atom, {row['wall_seconds']:.0f} s; fine-tuned on {row['rows']} rows in "
              f"{row['finetune_seconds']:.0f} s -> CheckpointData<{row['finetuned_checkpoint_pk']}>")
        if row.get('samples_per_spacegroup'):
            shares = ' '.join(f'{group}:{count}' for group, count in row['samples_per_spacegroup'].items())
            print(f'  samples per space group, shared by the rounds before: {shares}')
    hull = structures_of(node)
    print(f'RoundsWorkChain<{node.pk}> finished: {len(hull)} hull structures in the last round')
    for key, structure in sorted(hull.items()):
        print(f'  {key}: StructureData<{structure.pk}> {structure.get_formula()}')
    if hull:
        print(f'provenance, back through the fine-tunings: wyckoffdiff lineage {next(iter(hull.values())).pk}')
    return node
