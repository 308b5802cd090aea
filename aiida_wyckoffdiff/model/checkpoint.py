"""Checkpoints: weights plus the configurations, dataset hash and history that say what they are.

Files are written through a temporary name and renamed, so an interrupted save never leaves a
half-written checkpoint; they are read with ``torch.load(weights_only=True)``, so loading one never
runs pickled code. Anything unreadable or inconsistent raises :class:`CheckpointError`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..exceptions import CheckpointError, ConfigurationError
from ..files import file_sha256
from .config import SCHEMA_VERSION, ModelConfig, TrainingConfig
from .diffusion import WyckoffDiffusion, build_model
from .energy import EnergyHead

__all__ = [
    'FORMAT',
    'SHIPPED_CHECKPOINT',
    'Checkpoint',
    'export_checkpoint',
    'load_checkpoint',
    'save_checkpoint',
    'select_device',
    'shipped_checkpoint_path',
]

FORMAT = 'aiida-wyckoffdiff checkpoint'
SHIPPED_CHECKPOINT = 'wyckoffdiff-cpu.pt'
"""File name of the checkpoint shipped in ``aiida_wyckoffdiff/resources``."""
STAGES = ('base', 'finetuned')


def select_device(device: str | None = None) -> torch.device:
    """``device`` if given and usable, else CUDA when present, else the CPU."""
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigurationError(f'unknown device {device!r}: use "cpu", "cuda" or "cuda:N"') from None
    if chosen.type == 'cuda' and not torch.cuda.is_available():
        raise ConfigurationError(f'device {device!r} was requested but this torch sees no CUDA GPU: use "cpu"')
    return chosen


def shipped_checkpoint_path() -> Path:
    """The trained checkpoint installed with the package."""
    path = Path(str(resources.files('aiida_wyckoffdiff') / 'resources' / SHIPPED_CHECKPOINT))
    if not path.is_file():
        raise CheckpointError(
            f'the shipped checkpoint {path} is missing: reinstall aiida-wyckoffdiff or pass --checkpoint'
        )
    return path


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model on its device and everything recorded next to it."""

    model: WyckoffDiffusion
    stage: str
    """``base`` (no adapters) or ``finetuned``."""
    preset: str
    model_config: ModelConfig
    training_config: TrainingConfig
    dataset_hash: str
    epoch: int
    """Completed epochs of ``stage``."""
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    sha256: str = ''
    optimizer_state: dict[str, Any] | None = None
    training_weights: dict[str, torch.Tensor] | None = None
    """With an EMA (``TrainingConfig.ema_decay``): the weights being trained, while ``model`` holds their average."""


def _config_dict(config: ModelConfig | TrainingConfig) -> dict[str, Any]:
    values = asdict(config)
    if isinstance(config, ModelConfig):
        values['elements'] = list(config.elements)
        values['transition'] = config.transition.value
    return values


def save_checkpoint(
    path: str | Path,
    model: WyckoffDiffusion,
    *,
    stage: str,
    preset: str,
    training_config: TrainingConfig,
    dataset_hash: str,
    epoch: int,
    history: dict[str, list[dict[str, float]]],
    optimizer_state: dict[str, Any] | None = None,
    training_weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically; ``optimizer_state=None`` and ``training_weights=None`` give the small file to
    ship or share."""
    if stage not in STAGES:
        raise ValueError(f'stage must be one of {STAGES}, not {stage!r}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        'format': FORMAT,
        'schema_version': SCHEMA_VERSION,
        'stage': stage,
        'preset': preset,
        'model_config': _config_dict(model.config),
        'training_config': _config_dict(training_config),
        'dataset_hash': dataset_hash,
        'epoch': epoch,
        'history': history,
        'state_dict': {key: value.detach().cpu() for key, value in model.state_dict().items()},
        'optimizer': optimizer_state,
        'training_weights': training_weights,
        'energy_head': model.energy_head.state() if model.energy_head is not None else None,
    }
    partial = path.with_name(path.name + '.partial')
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f'no checkpoint at {path}')
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exception:  # noqa: BLE001 - torch raises pickle, zip and runtime errors alike for a damaged file
        raise CheckpointError(
            f'{path} is not a readable checkpoint ({type(exception).__name__}): it may be truncated or corrupt; '
            'retrain it or reinstall the package'
        ) from None
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise CheckpointError(f'{path} is a torch file but not an aiida-wyckoffdiff checkpoint')
    if payload.get('schema_version') != SCHEMA_VERSION:
        raise CheckpointError(
            f'{path} has checkpoint schema {payload.get("schema_version")!r}, this version reads {SCHEMA_VERSION}: '
            'use the aiida-wyckoffdiff release that wrote it, or retrain'
        )
    return payload


def load_checkpoint(path: str | Path, device: torch.device | str | None = None) -> Checkpoint:
    """Rebuild the model of a checkpoint on ``device`` (default: :func:`select_device`)."""
    path = Path(path)
    payload = _read(path)
    try:
        model_config = ModelConfig(**payload['model_config'])
        training_config = TrainingConfig(**payload['training_config'])
        stage = payload['stage']
        model = build_model(model_config, adapters=stage == 'finetuned', fill_tables=False)
        model.load_state_dict(payload['state_dict'])
        if payload.get('energy_head') is not None:
            model.energy_head = EnergyHead.from_state(payload['energy_head'])
    except (KeyError, TypeError, ValueError, RuntimeError) as exception:
        raise CheckpointError(f'{path} does not match the model it describes: {exception}') from None
    model.to(device if device is not None else select_device()).eval()
    return Checkpoint(
        model=model,
        stage=stage,
        preset=payload.get('preset', ''),
        model_config=model_config,
        training_config=training_config,
        dataset_hash=payload['dataset_hash'],
        epoch=int(payload['epoch']),
        history=payload.get('history', {}),
        sha256=file_sha256(path),
        optimizer_state=payload.get('optimizer'),
        training_weights=payload.get('training_weights'),
    )


def export_checkpoint(source: str | Path, destination: str | Path) -> Path:
    """Copy a checkpoint without its optimizer state and training weights: the file to ship or share (about a third of
    the size)."""
    loaded = load_checkpoint(source, 'cpu')
    return save_checkpoint(
        destination,
        loaded.model,
        stage=loaded.stage,
        preset=loaded.preset,
        training_config=loaded.training_config,
        dataset_hash=loaded.dataset_hash,
        epoch=loaded.epoch,
        history=loaded.history,
    )
