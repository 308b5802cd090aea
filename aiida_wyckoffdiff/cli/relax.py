"""``wyckoffdiff relax``: relax structure files or realized protostructure labels with one loaded potential."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from ..potentials import DEFAULT_RELAXER, RELAXERS
from ..relax import OPTIMIZERS
from .base import main


def _starting_structures(
    inputs: tuple[str, ...], potential: Any, candidates: int, seed: int
) -> tuple[list, list[dict[str, Any]]]:
    """Read the files; realize the labels (best of ``candidates``). Returns structures and a record per input."""
    from ..candidates import choose_realizations
    from ..symmetry import Protostructure
    from .structures import read_structure

    structures, records, labels = [], [], {}
    for position, item in enumerate(inputs):
        if Path(item).is_file():
            structures.append(read_structure(Path(item)))
            records.append({'input': item, 'label_requested': None})
        else:
            labels[position] = Protostructure.from_label(item)
            structures.append(None)
            records.append({'input': item, 'label_requested': labels[position].label})
    choices = choose_realizations(list(labels.values()), potential, candidates=candidates, seed=seed) if labels else []
    for position, choice in zip(labels, choices):
        structures[position] = choice.structure
        records[position]['candidate_scores'] = choice.scores
        records[position]['realization_failure'] = choice.reason
    return structures, records


def _trajectory_name(item: str, position: int) -> str:
    """A file's stem, or ``input_N`` for a label (labels hold ``:`` and other characters unfit for file names)."""
    return Path(item).stem if Path(item).is_file() else f'input_{position}'


@main.command()
@click.argument('inputs', nargs=-1, required=True, metavar='INPUT...')
@click.option(
    '--relaxer',
    type=click.Choice(list(RELAXERS)),
    default=DEFAULT_RELAXER,
    show_default=True,
    help='Interatomic potential.',
)
@click.option(
    '--checkpoint', help='Weights file (MatterSim: also 1M or 5M; default $WYCKOFFDIFF_MATTERSIM_CHECKPOINT or 1M).'
)
@click.option(
    '--output', '-o', type=click.Path(dir_okay=False, path_type=Path), default='relaxed.json', show_default=True
)
@click.option('--optimizer', type=click.Choice(OPTIMIZERS), default='FIRE', show_default=True)
@click.option('--fmax', type=float, default=0.05, show_default=True, help='Force criterion in eV/Å.')
@click.option('--steps', type=click.IntRange(min=0), default=300, show_default=True, help='Optimizer steps at most.')
@click.option(
    '--fix-symmetry/--free', default=False, show_default=True, help='Keep the starting space group (ASE FixSymmetry).'
)
@click.option(
    '--candidates',
    '-k',
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help='For a LABEL: realizations scored by a short pre-relaxation; the best is relaxed.',
)
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the realizations.')
@click.option('--device', default='cpu', show_default=True)
@click.option('--trajectory-dir', type=click.Path(file_okay=False, path_type=Path), help='Write one ASE trajectory per input here (NAME.traj).')
def relax(
    inputs: tuple[str, ...],
    relaxer: str,
    checkpoint: str | None,
    output: Path,
    optimizer: str,
    fmax: float,
    steps: int,
    fix_symmetry: bool,
    candidates: int,
    seed: int,
    device: str,
    trajectory_dir: Path | None,
) -> None:
    """Relax each INPUT: a structure file (CIF, POSCAR, ...) or a protostructure label to realize first.

    One bad input (overlapping atoms, an element the potential lacks, a failed realization) gets a reason in the
    output; the others are relaxed.
    """
    from tqdm import tqdm

    from ..potentials import load_potential
    from ..relax import RelaxOutcome, RelaxSettings, relax_structures

    potential = load_potential(relaxer, checkpoint, device=device)
    structures, records = _starting_structures(inputs, potential, candidates, seed)
    settings = RelaxSettings(optimizer=optimizer, fmax=fmax, steps=steps, fix_symmetry=fix_symmetry)
    present = [s for s in structures if s is not None]
    trajectories = None
    if trajectory_dir is not None:
        trajectory_dir.mkdir(parents=True, exist_ok=True)
        names = [_trajectory_name(item, position) for position, item in enumerate(inputs) if structures[position] is not None]
        trajectories = [trajectory_dir / f'{name}.traj' for name in names]
    with tqdm(total=len(present), desc=f'relaxing ({relaxer})', unit='structure') as bar:
        outcomes = iter(relax_structures(present, potential, settings, progress=bar.update, trajectories=trajectories))
    results = []
    for index, (structure, record) in enumerate(zip(structures, records)):
        if structure is None:
            outcome = RelaxOutcome(
                index, '', potential.name, potential.checkpoint_sha256, reason=record['realization_failure']
            )
        else:
            outcome = next(outcomes)
            outcome.index = index
        results.append(outcome.as_dict() | record)
    document = {'settings': asdict(settings), 'device': device, **potential.describe(), 'structures': results}
    output.write_text(json.dumps(document, indent=1))
    failed = sum(r['reason'] is not None for r in results)
    click.echo(f'wrote {output}: {len(results) - failed} relaxed, {failed} failed', err=True)
