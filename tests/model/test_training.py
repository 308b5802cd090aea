"""Training on real rows lowers the loss, resumes exactly, and checkpoints fail loudly when damaged."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from aiida_wyckoffdiff.data import dataset_hash, load_dataset
from aiida_wyckoffdiff.exceptions import CheckpointError, ConfigurationError
from aiida_wyckoffdiff.model.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint, select_device
from aiida_wyckoffdiff.model.config import Preset, TrainingConfig, get_preset
from aiida_wyckoffdiff.model.training import finetune, train


@pytest.fixture(scope='session')
def sample_dataset(sample_dataset_path):
    """The sample dataset frame and its hash."""
    return load_dataset(sample_dataset_path), dataset_hash(sample_dataset_path)


@pytest.fixture(scope='session')
def tiny_preset(tiny_config) -> Preset:
    training = TrainingConfig(
        learning_rate=3e-3, finetune_learning_rate=3e-3, batch_size=16, epochs=6, finetune_epochs=2
    )
    return Preset('tiny', 'test preset', replace(tiny_config, elements=(), num_timesteps=50), training)


@pytest.fixture(scope='session')
def trained(sample_dataset, tiny_preset, tmp_path_factory):
    frame, digest = sample_dataset
    path = tmp_path_factory.mktemp('train') / 'base.pt'
    train(frame, tiny_preset, path, dataset_hash=digest, device='cpu', progress=False)
    return path


def test_training_lowers_the_loss(trained, sample_dataset) -> None:
    checkpoint = load_checkpoint(trained, 'cpu')
    history = checkpoint.history['base']
    assert [record['epoch'] for record in history] == list(range(1, 7))
    assert history[-1]['train_loss'] < 0.7 * history[0]['train_loss']
    assert history[-1]['val_loss'] < history[0]['val_loss']
    assert checkpoint.dataset_hash == sample_dataset[1]
    assert checkpoint.stage == 'base' and checkpoint.epoch == 6
    assert set(checkpoint.model_config.elements) >= {'Li', 'O', 'Ti', 'Mg', 'Al'}  # vocabulary resolved from the data


def test_resumed_training_matches_an_uninterrupted_run(sample_dataset, tiny_preset, trained, tmp_path) -> None:
    frame, digest = sample_dataset
    path = tmp_path / 'base.pt'
    train(frame, tiny_preset.with_overrides(epochs=4), path, dataset_hash=digest, device='cpu', progress=False)
    train(frame, tiny_preset, path, dataset_hash=digest, device='cpu', resume=True, progress=False)
    resumed, straight = load_checkpoint(path, 'cpu'), load_checkpoint(trained, 'cpu')
    assert [r['train_loss'] for r in resumed.history['base']] == pytest.approx(
        [r['train_loss'] for r in straight.history['base']]
    )
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_finetuning_adds_adapters_and_keeps_the_base_history(sample_dataset, trained, tmp_path) -> None:
    frame, digest = sample_dataset
    path = finetune(frame, trained, tmp_path / 'ft.pt', dataset_hash=digest, epochs=1, device='cpu', progress=False)
    checkpoint = load_checkpoint(path, 'cpu')
    assert checkpoint.stage == 'finetuned' and checkpoint.model.has_adapters
    assert len(checkpoint.history['base']) == 6 and len(checkpoint.history['finetune']) == 1
    with pytest.raises(CheckpointError, match='already fine-tuned'):
        finetune(frame, path, tmp_path / 'again.pt', dataset_hash=digest, device='cpu', progress=False)


def test_resuming_on_other_data_is_refused(sample_dataset, tiny_preset, trained, tmp_path) -> None:
    frame, _ = sample_dataset
    copy = tmp_path / 'base.pt'
    copy.write_bytes(trained.read_bytes())
    with pytest.raises(CheckpointError, match='trained on dataset'):
        train(frame, tiny_preset, copy, dataset_hash='0' * 64, device='cpu', resume=True, progress=False)


@pytest.mark.parametrize(
    ('damage', 'match'),
    [
        (lambda data: data[: len(data) // 2], 'not a readable checkpoint'),
        (lambda data: b'garbage' * 100, 'not a readable checkpoint'),
    ],
)
def test_corrupt_checkpoints_are_refused(trained, tmp_path, damage, match) -> None:
    path = tmp_path / 'broken.pt'
    path.write_bytes(damage(trained.read_bytes()))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, 'cpu')


def test_mismatched_checkpoints_are_refused(trained, tmp_path) -> None:
    checkpoint = load_checkpoint(trained, 'cpu')
    foreign = tmp_path / 'foreign.pt'
    torch.save({'state_dict': {}}, foreign)
    with pytest.raises(CheckpointError, match='not an aiida-wyckoffdiff checkpoint'):
        load_checkpoint(foreign, 'cpu')
    payload = torch.load(trained, weights_only=True)
    payload['model_config']['hidden_dim'] = 32
    torch.save(payload, tmp_path / 'resized.pt')
    with pytest.raises(CheckpointError, match='does not match the model'):
        load_checkpoint(tmp_path / 'resized.pt', 'cpu')
    payload['schema_version'] = 999
    torch.save(payload, tmp_path / 'future.pt')
    with pytest.raises(CheckpointError, match='schema 999'):
        load_checkpoint(tmp_path / 'future.pt', 'cpu')
    with pytest.raises(CheckpointError, match='no checkpoint'):
        load_checkpoint(tmp_path / 'missing.pt', 'cpu')
    assert checkpoint.sha256 and len(checkpoint.sha256) == 64


def test_interrupted_saves_leave_the_old_checkpoint(trained, tmp_path, monkeypatch) -> None:
    checkpoint = load_checkpoint(trained, 'cpu')
    path = tmp_path / 'model.pt'
    path.write_bytes(trained.read_bytes())

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', fail)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, checkpoint.model, stage='base', preset='tiny', training_config=checkpoint.training_config,
                        dataset_hash='x', epoch=1, history={})  # fmt: skip
    monkeypatch.undo()
    assert load_checkpoint(path, 'cpu').epoch == checkpoint.epoch


def test_presets_and_devices() -> None:
    assert get_preset('paper').model.hidden_dim == 256 and len(get_preset('paper').model.elements) == 100
    assert get_preset('cpu').with_overrides(epochs=3, seed=None).training.epochs == 3
    with pytest.raises(ConfigurationError, match='unknown preset'):
        get_preset('gpu-xl')
    assert select_device('cpu').type == 'cpu'
    with pytest.raises(ConfigurationError, match='unknown device'):
        select_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match='no CUDA GPU'):
            select_device('cuda')


def test_exported_checkpoints_drop_the_optimizer_only(trained, tmp_path) -> None:
    exported = export_checkpoint(trained, tmp_path / 'small.pt')
    original, small = load_checkpoint(trained, 'cpu'), load_checkpoint(exported, 'cpu')
    assert original.optimizer_state is not None and small.optimizer_state is None
    assert small.history == original.history and small.epoch == original.epoch
    assert exported.stat().st_size < trained.stat().st_size
    for key, value in original.model.state_dict().items():
        assert torch.equal(small.model.state_dict()[key], value)


def test_augmented_averaged_cosine_training_resumes_exactly(sample_dataset, tiny_preset, tmp_path, monkeypatch) -> None:
    """Settings drawn per epoch, the EMA and the cosine schedule survive a kill after epoch 2 of 3."""
    from aiida_wyckoffdiff.model import training

    frame, digest = sample_dataset
    preset = tiny_preset.with_overrides(epochs=3, augment_settings=True, schedule='cosine', ema_decay=0.9)
    straight, resumed = tmp_path / 'straight.pt', tmp_path / 'resumed.pt'
    train(frame, preset, straight, dataset_hash=digest, device='cpu', progress=False)

    def save_then_die(path, model, **kwargs):
        save_checkpoint(path, model, **kwargs)
        if kwargs['epoch'] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, 'save_checkpoint', save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(frame, preset, resumed, dataset_hash=digest, device='cpu', progress=False)
    monkeypatch.undo()
    # resumed without repeating the options: the run keeps its own
    train(frame, tiny_preset.with_overrides(epochs=3), resumed, dataset_hash=digest, device='cpu', resume=True,
          progress=False)
    one, two = load_checkpoint(straight, 'cpu'), load_checkpoint(resumed, 'cpu')
    rates = [record['learning_rate'] for record in one.history['base']]
    assert rates == pytest.approx([3e-3, 3e-3 * 0.75, 3e-3 * 0.25])
    assert [r['train_loss'] for r in two.history['base']] == pytest.approx([r['train_loss'] for r in one.history['base']])
    for key, value in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[key], value)
        torch.testing.assert_close(two.training_weights[key], one.training_weights[key])
    averaged = [key for key, value in one.model.state_dict().items() if not torch.equal(value, one.training_weights[key])]
    assert averaged  # the model is the average, not the last step
    small = load_checkpoint(export_checkpoint(straight, tmp_path / 'small.pt'), 'cpu')
    assert small.training_weights is None and small.optimizer_state is None


def test_random_settings_keep_every_label(sample_dataset, tiny_preset) -> None:
    from aiida_wyckoffdiff.model.encoding import decode
    from aiida_wyckoffdiff.model.training import _splits

    frame, _ = sample_dataset
    config, train_set, _, _ = _splits(frame, tiny_preset.model)
    moved = train_set.in_random_settings(torch.Generator().manual_seed(0))
    changed = 0
    for before, after in zip(train_set.crystals, moved.crystals, strict=True):
        old = decode(before.spacegroup, before.x_fixed, before.x_count, config.elements)
        new = decode(after.spacegroup, after.x_fixed, after.x_count, config.elements)
        assert new.label == old.label
        changed += new != old
    assert changed > len(train_set) // 4
    with pytest.raises(ConfigurationError, match='schedule'):
        TrainingConfig(schedule='linear')
    with pytest.raises(ConfigurationError, match='EMA decay'):
        TrainingConfig(ema_decay=1.0)
