"""``wyckoffdiff relax``: relax structure files or realized protostructure labels with one loaded potential."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from ..files import verify_sha256, write_atomically
from ..potentials import DEFAULT_RELAXER, RELAXERS
from ..relax import OPTIMIZERS
from .base import SHA256_OPTION, main


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
@SHA256_OPTION
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
    checkpoint_sha256: str | None,
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
    output; the others are relaxed. The output is rewritten as each structure finishes, with ``complete: false``
    until the last one, so a job killed midway leaves every finished structure behind.
    """
    from tqdm import tqdm

    from ..potentials import load_potential
    from ..relax import RelaxOutcome, RelaxSettings, relax_structures

    if checkpoint_sha256 is not None:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise click.UsageError('--checkpoint-sha256 needs --checkpoint FILE')
        verify_sha256(checkpoint, checkpoint_sha256)
    potential = load_potential(relaxer, checkpoint, device=device)
    structures, records = _starting_structures(inputs, potential, candidates, seed)
    settings = RelaxSettings(optimizer=optimizer, fmax=fmax, steps=steps, fix_symmetry=fix_symmetry)
    positions = [position for position, structure in enumerate(structures) if structure is not None]
    results: list[dict[str, Any] | None] = [None] * len(inputs)
    document = {'settings': asdict(settings), 'device': device, **potential.describe()}
    for position, record in enumerate(records):
        if structures[position] is None:
            reason = record['realization_failure']
            outcome = RelaxOutcome(position, '', potential.name, potential.checkpoint_sha256, reason=reason)
            results[position] = outcome.as_dict() | record
    trajectories = None
    if trajectory_dir is not None:
        trajectory_dir.mkdir(parents=True, exist_ok=True)
        names = [_trajectory_name(inputs[position], position) for position in positions]
        trajectories = [trajectory_dir / f'{name}.traj' for name in names]

    def save(complete: bool) -> None:
        """Write the finished structures so far; ``complete`` is false until all are done, so a killed job says so."""
        done = [result for result in results if result is not None]
        write_atomically(output, json.dumps({**document, 'complete': complete, 'structures': done}, indent=1))

    with tqdm(total=len(positions), desc=f'relaxing ({relaxer})', unit='structure') as bar:

        def record(outcome: RelaxOutcome) -> None:
            position = positions[outcome.index]
            outcome.index = position
            results[position] = outcome.as_dict() | records[position]
            save(complete=False)
            bar.update(1)

        save(complete=False)
        relax_structures([structures[p] for p in positions], potential, settings, on_finished=record, trajectories=trajectories)
    save(complete=True)
    failed = sum(result['reason'] is not None for result in results)
    click.echo(f'wrote {output}: {len(results) - failed} relaxed, {failed} failed', err=True)

