"""Training of the base model and fine-tuning of the adapters, with resumable per-epoch checkpoints.

Every random draw of epoch ``e`` (batch order, diffusion times, noise, condition dropout) comes from a
generator seeded with ``(seed, e)``, so a resumed run takes exactly the steps an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..exceptions import CheckpointError, ConfigurationError, ProtostructureError
from ..symmetry import Protostructure, equivalent_settings
from .adapters import Condition, Conditions
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint, select_device
from .config import ModelConfig, Preset, TrainingConfig
from .diffusion import WyckoffDiffusion, build_model
from .encoding import EncodedCrystal, ProtoBatch, collate, encode

if TYPE_CHECKING:
    import pandas as pd

    from .energy import EnergyHead

__all__ = ['CrystalSet', 'attach_energy_head', 'finetune', 'finetune_on_new_rows', 'prepare_crystals', 'train',
           'vocabulary_of']

LOGGER = logging.getLogger(__name__)
VAL_SEED = 12345
"""Seed of the validation noise: the same corruption every epoch, so validation losses compare."""
BUCKET_BATCHES = 50
"""Batches per bucket of similar size: padding stays small without giving up a random order."""


def _element_z(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return Element(symbol).Z


def vocabulary_of(protostructures: Sequence[Protostructure]) -> tuple[str, ...]:
    """The elements that occur, by atomic number: the vocabulary of a preset with ``elements=()``."""
    return tuple(sorted({element for p in protostructures for element in p.elements}, key=_element_z))


@dataclass
class CrystalSet:
    """Encoded crystals and their conditions, ready to be cut into padded batches."""

    crystals: list[EncodedCrystal]
    chemsys: np.ndarray  # (n, V) float32 multi-hot
    e_above_hull: np.ndarray  # (n,) float32, eV/atom

    def __len__(self) -> int:
        return len(self.crystals)

    def batches(self, batch_size: int, generator: torch.Generator | None) -> Iterator[np.ndarray]:
        """Index arrays of batches; without a generator, in order (validation)."""
        if generator is None:
            yield from np.array_split(np.arange(len(self)), max(1, math.ceil(len(self) / batch_size)))
            return
        order = torch.randperm(len(self), generator=generator).numpy()
        sizes = np.array([len(crystal.fixed) for crystal in self.crystals])
        chunks = []
        for start in range(0, len(order), batch_size * BUCKET_BATCHES):
            bucket = order[start : start + batch_size * BUCKET_BATCHES]
            bucket = bucket[np.argsort(sizes[bucket], kind='stable')]
            chunks.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
        for index in torch.randperm(len(chunks), generator=generator).tolist():
            yield chunks[index]

    def in_random_settings(self, generator: torch.Generator) -> CrystalSet:
        """The same crystals, each written in one of its group's equivalent Wyckoff settings drawn by ``generator``:
        the same labels, other letters (``TrainingConfig.augment_settings``)."""
        draws = torch.randint(0, 2**31, (len(self),), generator=generator, device=generator.device).cpu().numpy()
        crystals = []
        for crystal, draw in zip(self.crystals, draws, strict=True):
            orders = equivalent_settings(crystal.spacegroup)
            order = orders[draw % len(orders)]
            crystals.append(replace(crystal, x_fixed=crystal.x_fixed[order], x_count=crystal.x_count[order]))
        return CrystalSet(crystals, self.chemsys, self.e_above_hull)

    def batch(self, indices: np.ndarray, offset: np.ndarray, device: torch.device) -> tuple[ProtoBatch, Conditions]:
        crystals = [self.crystals[i] for i in indices]
        batch = collate(crystals, self.chemsys.shape[1], offset).to(device)
        conditions = Conditions(
            chemsys=torch.from_numpy(self.chemsys[indices]).to(device),
            spacegroup=batch.spacegroup,
            e_above_hull=torch.from_numpy(self.e_above_hull[indices]).to(device),
            mask=torch.ones(len(indices), len(Condition), device=device),
        )
        return batch, conditions


def prepare_crystals(
    protostructures: Sequence[Protostructure], e_above_hull: Sequence[float], config: ModelConfig
) -> tuple[CrystalSet, int]:
    """Encode what fits ``config`` (vocabulary, counts up to ``max_count``); also return how many were left out."""
    column = {element: index for index, element in enumerate(config.elements)}
    crystals, chemsys, energies, skipped = [], [], [], 0
    for protostructure, energy in zip(protostructures, e_above_hull, strict=True):
        if not set(protostructure.elements) <= column.keys() or not math.isfinite(energy):
            skipped += 1
            continue
        try:
            crystals.append(encode(protostructure, config.elements, config.max_count))
        except ProtostructureError:
            skipped += 1
            continue
        hot = np.zeros(len(config.elements), dtype=np.float32)
        hot[[column[element] for element in protostructure.elements]] = 1.0
        chemsys.append(hot)
        energies.append(energy)
    if not crystals:
        raise ConfigurationError('no crystal of the dataset fits the model vocabulary: check the data and the preset')
    return CrystalSet(crystals, np.stack(chemsys), np.array(energies, dtype=np.float32)), skipped


def _frame_protostructures(frame: pd.DataFrame) -> list[Protostructure]:
    from ..data import protostructure_of

    return [protostructure_of(row) for _, row in frame.iterrows()]


def _statistics(
    crystals: CrystalSet, num_elements: int, num_counts: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class counts of fixed positions (V + 1,), of free-position counts (K + 1,), and of space groups (231,)."""
    fixed = np.zeros(num_elements + 1)
    counts = np.zeros(num_counts)
    groups = np.zeros(231)
    for crystal in crystals.crystals:
        fixed += np.bincount(crystal.x_fixed[crystal.fixed], minlength=num_elements + 1)
        counts += np.bincount(crystal.x_count[~crystal.fixed].ravel(), minlength=num_counts)
        groups[crystal.spacegroup] += 1
    return torch.from_numpy(fixed), torch.from_numpy(counts), torch.from_numpy(groups).float()


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)


def _drop_conditions(conditions: Conditions, config: TrainingConfig, generator: torch.Generator) -> Conditions:
    """Drop every condition of a crystal together with ``guidance_dropout``, and each alone with ``condition_dropout``."""
    size = conditions.mask.shape[0]
    device = conditions.mask.device
    keep_all = torch.rand(size, 1, generator=generator, device=device) >= config.guidance_dropout
    keep_each = torch.rand(size, len(Condition), generator=generator, device=device) >= config.condition_dropout
    return conditions.masked((keep_all & keep_each).float())


def _validation_loss(
    model: WyckoffDiffusion, data: CrystalSet, batch_size: int, conditioned: bool, device: torch.device
) -> float:
    generator = _epoch_generator(VAL_SEED, 0, device)
    offset = model.denoiser.position_offset.cpu().numpy()
    total, weight = 0.0, 0
    model.eval()
    with torch.no_grad():
        for indices in data.batches(batch_size, None):
            batch, conditions = data.batch(indices, offset, device)
            positions = int(batch.mask.sum())
            total += float(model.loss(batch, conditions if conditioned else None, generator)) * positions
            weight += positions
    return total / weight


def _weight_average(model: WyckoffDiffusion, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """Exponential moving average of ``model``'s weights (``TrainingConfig.ema_decay``), starting from its weights now:
    counted as one average already, so the first step is averaged into them instead of copied over them."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    average.n_averaged.fill_(1)
    return average


def _learning_rate(stage: _Stage, config: TrainingConfig, epoch: int) -> float:
    if config.schedule == 'cosine':
        return stage.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / stage.epochs))
    return stage.learning_rate


@dataclass
class _Stage:
    """What differs between base training and fine-tuning."""

    name: str
    learning_rate: float
    epochs: int
    conditioned: bool


def _fit(
    model: WyckoffDiffusion,
    stage: _Stage,
    train_set: CrystalSet,
    val_set: CrystalSet,
    *,
    preset: Preset,
    dataset_hash: str,
    output: Path,
    history: dict[str, list[dict[str, float]]],
    start_epoch: int,
    optimizer_state: dict | None,
    training_weights: dict[str, torch.Tensor] | None,
    device: torch.device,
    progress: bool,
) -> Path:
    """Train ``stage`` from ``start_epoch``; with an EMA, ``model`` arrives holding the average and
    ``training_weights`` (if resumed) the weights that were being trained."""
    from tqdm.auto import tqdm

    config = preset.training
    average = _weight_average(model, config.ema_decay) if config.ema_decay else None
    if average is not None and training_weights is not None:
        model.load_state_dict(training_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=stage.learning_rate)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    offset = model.denoiser.position_offset.cpu().numpy()
    records = history.setdefault(stage.name, [])
    for epoch in range(start_epoch, stage.epochs):
        started = time.perf_counter()
        generator = _epoch_generator(config.seed, epoch if stage.name == 'base' else 10_000 + epoch, device)
        learning_rate = _learning_rate(stage, config, epoch)
        for group in optimizer.param_groups:
            group['lr'] = learning_rate
        model.train()
        total, weight = 0.0, 0
        epoch_set = train_set.in_random_settings(generator) if config.augment_settings else train_set
        batches = list(epoch_set.batches(config.batch_size, generator))
        bar = tqdm(batches, desc=f'{stage.name} epoch {epoch + 1}/{stage.epochs}', disable=not progress, leave=False)
        for indices in bar:
            batch, conditions = epoch_set.batch(indices, offset, device)
            conditions = _drop_conditions(conditions, config, generator) if stage.conditioned else None
            loss = model.loss(batch, conditions, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
            optimizer.step()
            if average is not None:
                average.update_parameters(model)
            positions = int(batch.mask.sum())
            total += float(loss.detach()) * positions
            weight += positions
            bar.set_postfix(loss=f'{total / weight:.4f}')
        kept = model if average is None else average.module  # what sampling will use
        val_loss = _validation_loss(kept, val_set, config.batch_size, stage.conditioned, device)
        records.append(
            {
                'epoch': epoch + 1,
                'train_loss': total / weight,
                'val_loss': val_loss,
                'learning_rate': learning_rate,
                'seconds': time.perf_counter() - started,
            }
        )
        LOGGER.info('%s epoch %d: train %.4f, val %.4f', stage.name, epoch + 1, total / weight, val_loss)
        if progress:
            tqdm.write(
                f'{stage.name} epoch {epoch + 1}/{stage.epochs}: train loss {total / weight:.4f}, val loss {val_loss:.4f}'
            )
        save_checkpoint(
            output,
            kept,
            stage='base' if stage.name == 'base' else 'finetuned',
            preset=preset.name,
            training_config=config,
            dataset_hash=dataset_hash,
            epoch=epoch + 1,
            history=history,
            optimizer_state=optimizer.state_dict(),
            training_weights=None if average is None else {k: v.detach().cpu() for k, v in model.state_dict().items()},
        )
    return output


def _splits(frame: pd.DataFrame, config: ModelConfig) -> tuple[ModelConfig, CrystalSet, CrystalSet, int]:
    frame = frame[frame['e_above_hull'].notna()]
    parts = {split: frame[frame['split'] == split] for split in ('train', 'val')}
    protostructures = {split: _frame_protostructures(part) for split, part in parts.items()}
    if not config.elements:
        config = replace(config, elements=vocabulary_of(protostructures['train']))
    train_set, skipped = prepare_crystals(protostructures['train'], parts['train']['e_above_hull'].tolist(), config)
    val_set, skipped_val = prepare_crystals(protostructures['val'], parts['val']['e_above_hull'].tolist(), config)
    return config, train_set, val_set, skipped + skipped_val


def _resume(output: Path, stage: str, dataset_hash: str, device: torch.device) -> Checkpoint | None:
    if not output.exists():
        return None
    checkpoint = load_checkpoint(output, device)
    if checkpoint.stage != stage:
        raise CheckpointError(
            f'{output} holds a {checkpoint.stage} model, not a {stage} one: choose another output file'
        )
    if checkpoint.dataset_hash != dataset_hash:
        raise CheckpointError(
            f'{output} was trained on dataset {checkpoint.dataset_hash[:12]}, not {dataset_hash[:12]}: '
            'resume with the same data or write to a new file'
        )
    return checkpoint


def train(
    frame: pd.DataFrame,
    preset: Preset,
    output: str | Path,
    *,
    dataset_hash: str,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train the base model on the ``train`` rows of a dataset frame, validating on ``val``, one checkpoint per epoch.

    :param frame: :func:`aiida_wyckoffdiff.data.load_dataset` output (or rows of it).
    :param resume: continue from ``output`` if it exists (same data, same stage), else start afresh.
    """
    output = Path(output)
    chosen = select_device(device)
    torch.manual_seed(preset.training.seed)
    model_config, train_set, val_set, skipped = _splits(frame, preset.model)
    LOGGER.info('training on %d crystals, validating on %d, %d left out', len(train_set), len(val_set), skipped)
    checkpoint = _resume(output, 'base', dataset_hash, chosen) if resume else None
    if checkpoint is None:
        model = build_model(model_config).to(chosen)
        model.set_statistics(*_statistics(train_set, len(model_config.elements), model_config.max_count + 1))
        start, history, optimizer_state, training_weights = 0, {}, None, None
    else:
        model, start, history = checkpoint.model, checkpoint.epoch, checkpoint.history
        optimizer_state, training_weights = checkpoint.optimizer_state, checkpoint.training_weights
        own = checkpoint.training_config  # a resumed run keeps its augmentation, schedule and average
        preset = preset.with_overrides(
            augment_settings=own.augment_settings, schedule=own.schedule, ema_decay=own.ema_decay
        )
    stage = _Stage('base', preset.training.learning_rate, preset.training.epochs, conditioned=False)
    return _fit(
        model, stage, train_set, val_set, preset=replace(preset, model=model_config), dataset_hash=dataset_hash, output=output,
        history=history, start_epoch=start, optimizer_state=optimizer_state, training_weights=training_weights,
        device=chosen, progress=progress,
    )  # fmt: skip


def finetune(
    frame: pd.DataFrame,
    base: str | Path,
    output: str | Path,
    *,
    dataset_hash: str,
    epochs: int | None = None,
    learning_rate: float | None = None,
    augment_settings: bool | None = None,
    schedule: str | None = None,
    ema_decay: float | None = None,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Add zero-initialised adapters to a base checkpoint and train the whole network with conditions.

    Fine-tuning updates all weights (as MatterGen does by default); crystals whose conditions are all
    dropped still train the unconditional path that classifier-free guidance needs. A ``base`` that is fine-tuned
    already is trained further, from its last epoch to ``epochs`` (as the shipped checkpoint was: 15, then 30, then 60).
    Settings left ``None`` keep the checkpoint's (:class:`TrainingConfig`), except the schedule, the weight average and
    the augmentation, which a new run sets afresh (constant, off, off) and a resumed one keeps.
    """
    output = Path(output)
    chosen = select_device(device)
    checkpoint = _resume(output, 'finetuned', dataset_hash, chosen) if resume else None
    resumed = checkpoint is not None
    start, optimizer_state = 0, None
    if checkpoint is None:
        checkpoint = load_checkpoint(base, chosen)
        if checkpoint.stage != 'base':
            if epochs is None or epochs <= checkpoint.epoch:
                raise CheckpointError(
                    f'{base} is already fine-tuned for {checkpoint.epoch} epochs: pass --epochs above '
                    f'{checkpoint.epoch} to fine-tune it further, or fine-tune a base checkpoint from `wyckoffdiff train`'
                )
            # Further fine-tuning: the epochs it lacks, with its optimizer state where it kept one (an exported
            # checkpoint did not: AdamW starts afresh), each epoch's batches as an uninterrupted run would draw them.
            start, optimizer_state = checkpoint.epoch, checkpoint.optimizer_state
        if checkpoint.dataset_hash != dataset_hash:
            LOGGER.warning(
                'fine-tuning on dataset %s, the base model saw %s', dataset_hash[:12], checkpoint.dataset_hash[:12]
            )
    else:
        start, optimizer_state = checkpoint.epoch, checkpoint.optimizer_state
    # A resumed run keeps its own schedule, average and augmentation; a new run on top of a checkpoint chooses its own
    # (else a cosine run's near-zero last rate would carry over into every further fine-tuning).
    settings = checkpoint.training_config if resumed else replace(
        checkpoint.training_config, augment_settings=False, schedule='constant', ema_decay=0.0
    )
    training = replace(
        settings,
        **{
            key: value
            for key, value in (
                ('finetune_epochs', epochs),
                ('finetune_learning_rate', learning_rate),
                ('augment_settings', augment_settings),
                ('schedule', schedule),
                ('ema_decay', ema_decay),
            )
            if value is not None
        },
    )
    torch.manual_seed(training.seed)
    model = checkpoint.model
    _, train_set, val_set, _ = _splits(frame, checkpoint.model_config)
    if not model.has_adapters:
        energies = train_set.e_above_hull
        model.add_adapters(float(energies.mean()), float(energies.std()) or 1.0)
    preset = Preset(checkpoint.preset, '', checkpoint.model_config, training)
    stage = _Stage('finetune', training.finetune_learning_rate, training.finetune_epochs, conditioned=True)
    return _fit(
        model, stage, train_set, val_set, preset=preset, dataset_hash=dataset_hash, output=output,
        history=checkpoint.history, start_epoch=start, optimizer_state=optimizer_state,
        training_weights=checkpoint.training_weights, device=chosen, progress=progress,
    )  # fmt: skip


def finetune_on_new_rows(
    dataset: pd.DataFrame,
    rows: pd.DataFrame,
    base: str | Path,
    output: str | Path,
    *,
    epochs: int,
    dataset_share: float,
    val_rows: int | None = None,
    seed: int = 0,
    learning_rate: float | None = None,
    device: str | None = None,
) -> tuple[pd.DataFrame, int, EnergyHead | None]:
    """Train ``base`` ``epochs`` more epochs on new ``rows`` mixed with ``dataset``'s (:func:`..data.mix_rows`), the
    mixed rows' sha256 as dataset hash: what a round of the rounds work chain does, also without a profile. The output
    also carries an energy head fitted to ``rows`` alone (:func:`.energy.fit_energy_head`; none below
    :data:`.energy.MIN_ROWS` rows), which steers sampling towards a requested e_above_hull. Returns the mixed rows,
    the epochs ``base`` had (0 for a base checkpoint) and that head."""
    from ..data import frame_sha256, mix_rows

    mixed = mix_rows(dataset, rows, dataset_share=dataset_share, val_rows=val_rows, seed=seed)
    before = load_checkpoint(base, 'cpu')
    done = before.epoch if before.stage == 'finetuned' else 0
    finetune(mixed, base, output, dataset_hash=frame_sha256(mixed), epochs=done + epochs, learning_rate=learning_rate,
             device=device, progress=False)
    return mixed, done, attach_energy_head(output, rows)


def attach_energy_head(path: str | Path, rows: pd.DataFrame) -> EnergyHead | None:
    """Fit the checkpoint's energy head to the relaxation ``rows`` it was fine-tuned on
    (:func:`.energy.fit_energy_head`) and save it in the same file, everything else unchanged; the head, or ``None``
    where the rows are too few."""
    from .energy import fit_energy_head

    tuned = load_checkpoint(path, 'cpu')
    tuned.model.energy_head = fit_energy_head(tuned.model, rows.to_dict('records'))
    save_checkpoint(path, tuned.model, stage=tuned.stage, preset=tuned.preset, training_config=tuned.training_config,
                    dataset_hash=tuned.dataset_hash, epoch=tuned.epoch, history=tuned.history,
                    optimizer_state=tuned.optimizer_state, training_weights=tuned.training_weights)
    return tuned.model.energy_head
