"""``wyckoffdiff train``, ``finetune`` and ``generate``: the WyckoffDiff-Adaptor model from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..data import DATA_DIR_VARIABLE, DATASET_SHARE
from ..files import verify_sha256, write_atomically
from ..model.config import GUIDABLE_CONDITIONS, SamplingConfig
from .base import SHA256_OPTION, main

DEVICE_OPTION = click.option('--device', help='"cpu", "cuda" or "cuda:N" [default: CUDA when present, else CPU].')
DATASET_OPTION = click.option(
    '--dataset',
    type=click.Path(dir_okay=False, path_type=Path),
    help='Dataset file from `wyckoffdiff data build` [default: its cache].',
)
DATA_DIR_OPTION = click.option(
    '--data-dir',
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_VARIABLE,
    help='Folder of the shared MP files, to find the cache.',
)


def _dataset(dataset: Path | None, data_dir: Path | None) -> tuple[Any, str]:
    """The dataset frame and its hash."""
    from ..data import dataset_hash, default_dataset_path, find_data_dir, load_dataset

    path = dataset if dataset is not None else default_dataset_path(find_data_dir(data_dir))
    frame = load_dataset(path)
    return frame, dataset_hash(path)


AUGMENT_OPTION = click.option(
    '--augment-settings/--canonical-settings',
    default=None,
    help='Write each crystal, every epoch, in one of its equivalent Wyckoff settings [default: canonical; a resumed '
    'run keeps its own].',
)
SCHEDULE_OPTION = click.option(
    '--schedule',
    type=click.Choice(['constant', 'cosine']),
    help='Learning rate over the epochs: constant, or cosine down to 0 at the last [default: constant; a resumed run '
    'keeps its own].',
)
EMA_OPTION = click.option(
    '--ema-decay',
    type=click.FloatRange(0, 1, max_open=True),
    help='Keep an exponential moving average of the weights with this decay per step (0.999 is common); the '
    'checkpoint\'s model is the average [default: off; a resumed run keeps its own].',
)


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')


@main.command()
@click.option('--preset', default='cpu', show_default=True, help='Named configuration: "cpu" or "paper".')
@DATASET_OPTION
@DATA_DIR_OPTION
@click.option(
    '--output', '-o', type=click.Path(dir_okay=False, path_type=Path), default='wyckoffdiff-base.pt', show_default=True
)
@click.option('--epochs', type=click.IntRange(min=1), help='Override the preset number of epochs.')
@click.option('--batch-size', type=click.IntRange(min=1), help='Override the preset batch size.')
@click.option('--learning-rate', type=click.FloatRange(min=0, min_open=True), help='Override the preset learning rate.')
@click.option('--seed', type=int, help='Override the preset seed.')
@click.option('--resume', is_flag=True, help='Continue from OUTPUT if it exists (same data).')
@AUGMENT_OPTION
@SCHEDULE_OPTION
@EMA_OPTION
@DEVICE_OPTION
def train(
    preset: str,
    dataset: Path | None,
    data_dir: Path | None,
    output: Path,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    seed: int | None,
    resume: bool,
    augment_settings: bool | None,
    schedule: str | None,
    ema_decay: float | None,
    device: str | None,
) -> None:
    """Train the unconditional base model; writes a checkpoint after every epoch."""
    from ..model.config import get_preset
    from ..model.training import train as train_model

    chosen = get_preset(preset).with_overrides(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        augment_settings=augment_settings, schedule=schedule, ema_decay=ema_decay,
    )  # fmt: skip
    frame, digest = _dataset(dataset, data_dir)
    _log_to_stderr()
    path = train_model(frame, chosen, output, dataset_hash=digest, device=device, resume=resume)
    click.echo(f'base model written to {path}')


@main.command()
@click.option(
    '--base',
    'base',
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Checkpoint from `wyckoffdiff train`.',
)
@DATASET_OPTION
@DATA_DIR_OPTION
@click.option(
    '--output',
    '-o',
    type=click.Path(dir_okay=False, path_type=Path),
    default='wyckoffdiff-finetuned.pt',
    show_default=True,
)
@click.option('--epochs', type=click.IntRange(min=1), help='Override the fine-tuning epochs of the base preset.')
@click.option(
    '--learning-rate', type=click.FloatRange(min=0, min_open=True), help='Override the fine-tuning learning rate.'
)
@click.option('--resume', is_flag=True, help='Continue from OUTPUT if it exists (same data).')
@click.option(
    '--rows',
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='New training rows (`wyckoffdiff relaxation-rows`), mixed with the dataset\'s rows by --dataset-share.',
)
@click.option(
    '--dataset-share',
    type=click.FloatRange(0, 1, max_open=True),
    default=DATASET_SHARE,
    show_default=True,
    help='With --rows: the share of dataset rows among the training rows.',
)
@click.option('--val-rows', type=click.IntRange(min=1), help='With --rows: validation rows drawn [default: all].')
@AUGMENT_OPTION
@SCHEDULE_OPTION
@EMA_OPTION
@DEVICE_OPTION
def finetune(
    base: Path,
    dataset: Path | None,
    data_dir: Path | None,
    output: Path,
    epochs: int | None,
    learning_rate: float | None,
    resume: bool,
    rows: Path | None,
    dataset_share: float,
    val_rows: int | None,
    augment_settings: bool | None,
    schedule: str | None,
    ema_decay: float | None,
    device: str | None,
) -> None:
    """Fine-tune adapters for chemical system, space group and e_above_hull on a base model, or a fine-tuned one
    further (--epochs above its own), optionally on new rows mixed with the dataset; with --rows the output also
    carries an energy head fitted to them (docs/rounds.md)."""
    from ..model.training import attach_energy_head
    from ..model.training import finetune as finetune_model

    frame, digest = _dataset(dataset, data_dir)
    new_rows = None
    if rows is not None:
        from ..data import frame_sha256, load_dataset, mix_rows

        new_rows = load_dataset(rows)
        frame = mix_rows(frame, new_rows, dataset_share=dataset_share, val_rows=val_rows)
        digest = frame_sha256(frame)
    _log_to_stderr()
    path = finetune_model(
        frame,
        base,
        output,
        dataset_hash=digest,
        epochs=epochs,
        learning_rate=learning_rate,
        augment_settings=augment_settings,
        schedule=schedule,
        ema_decay=ema_decay,
        device=device,
        resume=resume,
    )
    if new_rows is not None:
        attach_energy_head(path, new_rows)
    click.echo(f'fine-tuned model written to {path}')


@main.command()
@click.option('--chemsys', required=True, help='Elements joined by "-", e.g. Li-O; every one appears in every sample.')
@click.option(
    '--spacegroup',
    'spacegroups',
    multiple=True,
    type=int,
    help='Space group number; repeat for several [default: drawn as in training].',
)
@click.option('--num-samples', type=click.IntRange(1, 100_000), default=16, show_default=True)
@click.option('--e-above-hull', type=float, help='Target energy above hull in eV/atom [default: unconditioned].')
@click.option(
    '--guidance',
    type=click.FloatRange(min=0),
    default=SamplingConfig.guidance_scale,
    show_default=True,
    help='Classifier-free guidance scale g.',
)
@click.option(
    '--guided',
    default=','.join(SamplingConfig.guided),
    show_default=True,
    help=f'Conditions the guidance contrasts, comma-separated, from {",".join(GUIDABLE_CONDITIONS)}; the others '
    'are kept in both passes (docs/discovery.md).',
)
@click.option(
    '--plausible/--any-composition',
    default=SamplingConfig.plausible,
    show_default=True,
    help='In ionic systems, keep to compositions that common oxidation states balance (peroxides and superoxides '
    'of alkali and alkaline-earth metals allowed): known arrangements that do not are skipped, chains end in their '
    'likeliest balanced last step. --any-composition for metal-rich suboxides such as Ti6O.',
)
@click.option(
    '--known-prototypes', type=click.FloatRange(0, 1), default=SamplingConfig.known_prototypes, show_default=True,
    help='Share of each space group\'s samples chosen among the training crystals\' arrangements of Wyckoff orbits, '
    'with the requested elements, by the model\'s score (docs/discovery.md).',
)
@click.option(
    '--energy-guidance', type=click.FloatRange(min=0), default=SamplingConfig.energy_guidance, show_default=True,
    help='Weight of the checkpoint\'s energy head, fitted to relaxations when it was fine-tuned on them (wyckoffdiff '
    'finetune, the rounds work chain), in choosing known arrangements towards --e-above-hull; a checkpoint without '
    'one ignores it. Off (0) by default: at 8 and 32 it steered no further than the fine-tuned adapter alone '
    '(docs/rounds.md).',
)
@click.option(
    '--energy-screen', type=click.IntRange(min=1), default=SamplingConfig.energy_screen, show_default=True,
    help='Draw this many times --num-samples and keep those the checkpoint\'s energy head predicts closest to '
    '--e-above-hull: a screen learned from relaxations (wyckoffdiff finetune, the rounds work chain). A checkpoint '
    'without a head, or no --e-above-hull, ignores it (docs/rounds.md).',
)
@click.option(
    '--steps', type=click.IntRange(min=1), default=100, show_default=True, help='Strided reverse steps out of T.'
)
@click.option(
    '--max-atoms',
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help='Atom limit of the conventional cell.',
)
@click.option(
    '--max-draws', type=click.IntRange(min=1), default=SamplingConfig.max_draws, show_default=True,
    help='Reverse chains per requested sample at most, redraws included.'
)
@click.option('--seed', type=int, default=0, show_default=True)
@click.option(
    '--exclude', type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='A text file of protostructure labels, one per line, not to return (what earlier rounds relaxed): known '
    'arrangements skip them, a chain that draws one is drawn again.',
)
@click.option(
    '--checkpoint',
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='[default: the checkpoint shipped with the package]',
)
@SHA256_OPTION
@click.option(
    '--output', '-o', type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default='-', show_default=True
)
@click.option(
    '--threads',
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help='CPU threads for torch: the small sampling batches gain little from more, and lose much on a busy machine.',
)
@DEVICE_OPTION
def generate(
    chemsys: str,
    spacegroups: tuple[int, ...],
    num_samples: int,
    e_above_hull: float | None,
    guidance: float,
    guided: str,
    plausible: bool,
    known_prototypes: float,
    energy_guidance: float,
    energy_screen: int,
    steps: int,
    max_atoms: int,
    max_draws: int,
    seed: int,
    exclude: Path | None,
    checkpoint: Path | None,
    checkpoint_sha256: str | None,
    output: Path,
    threads: int,
    device: str | None,
) -> None:
    """Generate protostructures of a chemical system in chosen space groups, as JSON."""
    import torch

    from ..model.checkpoint import shipped_checkpoint_path

    if checkpoint_sha256 is not None:
        verify_sha256(checkpoint or shipped_checkpoint_path(), checkpoint_sha256)

    from ..model.sampling import GenerationRequest, generate_json

    excluded = frozenset(line.strip() for line in exclude.read_text().splitlines() if line.strip()) if exclude else ()
    request = GenerationRequest(tuple(chemsys.split('-')), spacegroups, e_above_hull, num_samples, excluded)
    config = SamplingConfig(
        num_steps=steps,
        guidance_scale=guidance,
        guided=tuple(name.strip() for name in guided.split(',') if name.strip()),
        plausible=plausible,
        known_prototypes=known_prototypes,
        energy_guidance=energy_guidance,
        energy_screen=energy_screen,
        max_atoms=max_atoms,
        max_draws=max_draws,
    )
    torch.set_num_threads(threads)
    document = generate_json(request, config, seed=seed, checkpoint=checkpoint, device=device)
    text = json.dumps(document, indent=1)
    if str(output) == '-':
        click.echo(text)
    else:
        write_atomically(output, text + '\n')
    meta = document['meta']
    click.echo(
        f'{len(document["samples"])} of {num_samples} samples in {meta["seconds"]:.2f} s '
        f'({meta["num_drawn"]} drawn, {meta["num_failed"]} failed)',
        err=True,
    )
