"""Builders and a runner for the phase-diagram workflow, shared by the examples and the main job."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from aiida import orm

__all__ = ['phase_diagram_builder', 'run_phase_diagram_example']

PAPER_SAMPLES_PER_SPACEGROUP = 64
"""20 space groups x 64 samples = the paper's 1280 structures."""


def phase_diagram_builder(
    chemsys: str,
    *,
    code: str = 'wyckoffdiff@localhost',
    spacegroups: list[int] | None = None,
    num_samples: int = 4,
    e_above_hull: float = 0.0,
    relaxer: str = 'chgnet',
    model_checkpoint: str | Path | None = None,
    relax_checkpoint: str | Path | None = None,
    relax_settings: dict[str, Any] | None = None,
    structures_per_job: int | None = None,
    seed: int = 0,
) -> Any:
    """A ready builder of ``wyckoffdiff.phase_diagram``; checkpoints are stored once per sha256.

    :param model_checkpoint: WyckoffDiff weights; default the checkpoint shipped with the package.
    :param relax_checkpoint: weights of the potential; default those its package ships (CHGNet, SevenNet).
    :param relax_settings: over the staged protocol (``calculations.relax.STAGED_SETTINGS``);
        ``{'fix_symmetry': False, 'prune_above': None}`` is the free relaxation without pruning.
    :param structures_per_job: structures per relax job (the workflow's default 64); every job runs at once, so
        fewer, larger jobs bound the memory (a CHGNet job peaks at about 5 GiB) and the cores in use.
    """
    from .model.checkpoint import shipped_checkpoint_path
    from .nodes import CheckpointData
    from .workchains.phase_diagram import PhaseDiagramWorkChain

    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from .exceptions import WyckoffDiffError

    try:
        loaded = orm.load_code(code)
    except (NotExistent, MultipleObjectsError) as exception:
        raise WyckoffDiffError(f'no code {code!r} in this profile ({exception}): run `wyckoffdiff setup` first') from None
    builder = PhaseDiagramWorkChain.get_builder()
    builder.chemsys = chemsys
    if spacegroups:
        builder.spacegroups = spacegroups
    builder.num_samples = num_samples
    builder.e_above_hull = e_above_hull
    builder.seed = seed
    if structures_per_job:
        builder.structures_per_job = structures_per_job
    builder.generate.code = loaded
    builder.generate.checkpoint = CheckpointData.get_or_create(model_checkpoint or shipped_checkpoint_path(), kind='wyckoffdiff')
    builder.relax.code = loaded
    builder.relax.relaxer = relaxer
    if relax_checkpoint:
        builder.relax.checkpoint = CheckpointData.get_or_create(relax_checkpoint, kind=relaxer)
    if relax_settings:
        builder.relax.settings = relax_settings
    return builder


def run_phase_diagram_example(
    chemsys: str, argv: list[str] | None = None, results: Path = Path('results'), score: bool = False
) -> orm.WorkChainNode:
    """Parse the example's options, run the workflow, copy its plots to ``results/CHEMSYS`` and say what to look at.

    :param score: also score the run (:func:`aiida_wyckoffdiff.reporting.scan_report`: validity, uniqueness,
        novelty, S.U.N., symmetry kept, known phases found), print it and write ``metrics.json`` beside the plots.
    """
    from aiida.engine import run_get_node

    parser = argparse.ArgumentParser(description=f'{chemsys} phase diagram with aiida-wyckoffdiff')
    parser.add_argument('--samples', type=int, default=2, help='Protostructures per space group (default 2).')
    parser.add_argument('--paper-size', action='store_true', help=f'{PAPER_SAMPLES_PER_SPACEGROUP} per space group: 1280 in all.')
    parser.add_argument('--spacegroup', type=int, action='append', help='Scan these space groups (default: top 20).')
    parser.add_argument('--relaxer', default='chgnet', help='mattersim, chgnet or sevenn (default chgnet: works offline).')
    parser.add_argument('--relax-checkpoint', help='Weights of the potential (required for mattersim without internet).')
    parser.add_argument('--steps', type=int, default=150, help='Optimizer steps at most per structure (default 150).')
    parser.add_argument('--fmax', type=float, default=0.1, help='Force criterion in eV/Å (default 0.1).')
    parser.add_argument('--free', action='store_true',
                        help='Relax freely, without pruning, as before the staged protocol (docs/relaxation.md).')
    parser.add_argument('--structures-per-job', type=int,
                        help='Structures per relax job (default 64). All jobs run at once: fewer jobs, less memory.')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', type=Path, default=results / chemsys)
    options = parser.parse_args(argv)
    builder = phase_diagram_builder(
        chemsys,
        spacegroups=options.spacegroup,
        num_samples=PAPER_SAMPLES_PER_SPACEGROUP if options.paper_size else options.samples,
        relaxer=options.relaxer,
        relax_checkpoint=options.relax_checkpoint,
        relax_settings={'steps': options.steps, 'fmax': options.fmax,
                        **({'fix_symmetry': False, 'prune_above': None} if options.free else {})},
        structures_per_job=options.structures_per_job,
        seed=options.seed,
    )
    _, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise SystemExit(f'PhaseDiagramWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    options.output.mkdir(parents=True, exist_ok=True)
    for name, plot in node.outputs.plots.items():
        target = options.output / plot.filename
        with plot.open(mode='rb') as source, open(target, 'wb') as handle:
            shutil.copyfileobj(source, handle)
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
    if score:
        from .reporting import format_report, scan_report

        report = scan_report(node)
        (options.output / 'metrics.json').write_text(json.dumps(report, indent=1))
        print(format_report(report), end='')
    return node
