"""``wyckoffdiff train``, ``finetune`` and ``generate`` through click's runner, on the real sample rows."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, shipped_checkpoint_path
from aiida_wyckoffdiff.model.config import SamplingConfig


@pytest.fixture(scope='session')
def cli_checkpoints(sample_dataset_path, tmp_path_factory):
    """A base and a fine-tuned checkpoint trained by the CLI on the sample dataset (one epoch each)."""
    folder = tmp_path_factory.mktemp('cli')
    dataset = sample_dataset_path
    runner = CliRunner()
    base, tuned = folder / 'base.pt', folder / 'tuned.pt'
    result = runner.invoke(
        main, ['train', '--dataset', str(dataset), '--epochs', '1', '--batch-size', '32', '--output', str(base)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main, ['finetune', '--base', str(base), '--dataset', str(dataset), '--epochs', '1', '--output', str(tuned)]
    )
    assert result.exit_code == 0, result.output
    return base, tuned


def test_train_and_finetune_write_checkpoints(cli_checkpoints) -> None:
    base, tuned = (load_checkpoint(path, 'cpu') for path in cli_checkpoints)
    assert base.stage == 'base' and tuned.stage == 'finetuned' and base.preset == tuned.preset == 'cpu'
    assert base.dataset_hash == tuned.dataset_hash and len(base.dataset_hash) == 64


def test_generate_writes_the_documented_json(cli_checkpoints, tmp_path) -> None:
    output = tmp_path / 'gen.json'
    arguments = ['generate', '--chemsys', 'Li-O', '--spacegroup', '225', '--spacegroup', '194', '--num-samples', '4',
                 '--e-above-hull', '0', '--guidance', '2', '--steps', '10', '--seed', '0', '--checkpoint', str(cli_checkpoints[1]),
                 '--output', str(output)]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    meta = document['meta']
    assert {'checkpoint_sha256', 'seed', 'steps', 'guidance', 'seconds', 'num_drawn', 'num_failed', 'num_repaired'} <= meta.keys()
    assert meta['steps'] == 10 and meta['guidance'] == 2.0 and meta['seed'] == 0
    assert (meta['temperature'], meta['known_prototypes'], meta['known_prototypes_across_groups']) == (
        SamplingConfig.temperature, SamplingConfig.known_prototypes, SamplingConfig.known_prototypes_across_groups)
    assert len(document['samples']) + meta['num_failed'] == 4
    assert meta['num_repaired'] == sum(sample['repaired'] for sample in document['samples'])
    for sample in document['samples']:
        assert {'protostructure', 'spacegroup', 'chemsys', 'num_atoms', 'conditions', 'repaired'} <= sample.keys()
        assert sample['spacegroup'] in (225, 194) and sample['chemsys'] == 'Li-O'
        assert sample['conditions'] == {'chemsys': 'Li-O', 'e_above_hull': 0.0, 'spacegroup': sample['spacegroup']}


@pytest.mark.parametrize(
    ('arguments', 'message'),
    [
        (['--chemsys', 'Li-Pu'], 'not in the model vocabulary'),
        (['--chemsys', 'Li-Qq'], 'not an element symbol'),
        (['--chemsys', 'Li-O', '--spacegroup', '0'], 'does not exist'),
        (['--chemsys', 'Li-O', '--spacegroup', '231'], 'does not exist'),
        (['--chemsys', 'Li-O', '--num-samples', '-1'], 'not in the range'),
        (['--chemsys', 'Li-O', '--num-samples', '100000000'], 'not in the range'),
        (['--chemsys', 'Li-O', '--e-above-hull', '-1'], 'e_above_hull'),
    ],
)
def test_bad_generation_input_fails_cleanly_and_writes_nothing(cli_checkpoints, tmp_path, arguments, message) -> None:
    output = tmp_path / 'gen.json'
    result = CliRunner().invoke(
        main, ['generate', *arguments, '--checkpoint', str(cli_checkpoints[1]), '--output', str(output)]
    )
    assert result.exit_code != 0 and message in result.output
    assert 'Traceback' not in result.output
    assert not list(tmp_path.iterdir())


def test_corrupt_checkpoint_fails_cleanly(tmp_path) -> None:
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'PK\x03\x04 not really a zip')
    result = CliRunner().invoke(
        main, ['generate', '--chemsys', 'Li-O', '--checkpoint', str(broken), '--output', str(tmp_path / 'g.json')]
    )
    assert result.exit_code == 1 and 'not a readable checkpoint' in result.output
    assert not (tmp_path / 'g.json').exists()


def test_finetuning_a_finetuned_checkpoint_needs_more_epochs(cli_checkpoints, sample_dataset_path, tmp_path) -> None:
    """Without more epochs than it has, a fine-tuned checkpoint is refused; with them it is trained further, from its
    last epoch on, and its history goes on."""
    arguments = ['finetune', '--base', str(cli_checkpoints[1]), '--dataset', str(sample_dataset_path)]
    for epochs in ([], ['--epochs', '1']):
        result = CliRunner().invoke(main, [*arguments, *epochs, '--output', str(tmp_path / 'x.pt')])
        assert result.exit_code == 1 and 'already fine-tuned for 1 epochs: pass --epochs above 1' in result.output
    assert not (tmp_path / 'x.pt').exists()
    result = CliRunner().invoke(main, [*arguments, '--epochs', '2', '--output', str(tmp_path / 'further.pt')])
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(cli_checkpoints[1], 'cpu'), load_checkpoint(tmp_path / 'further.pt', 'cpu')
    assert after.stage == 'finetuned' and after.epoch == 2
    assert [r['epoch'] for r in after.history['finetune']] == [1, 2]
    assert after.history['finetune'][0] == before.history['finetune'][0]
    changed = [not torch.equal(a, b) for a, b in zip(before.model.parameters(), after.model.parameters(), strict=True)]
    assert any(changed)


def test_finetune_takes_the_training_options(cli_checkpoints, sample_dataset_path, tmp_path) -> None:
    """--augment-settings, --schedule and --ema-decay reach the checkpoint's training settings; bad values are refused."""
    arguments = ['finetune', '--base', str(cli_checkpoints[1]), '--dataset', str(sample_dataset_path), '--epochs', '2']
    result = CliRunner().invoke(main, [*arguments, '--ema-decay', '1.5', '--output', str(tmp_path / 'x.pt')])
    assert result.exit_code == 2 and '--ema-decay' in result.output
    options = ['--augment-settings', '--schedule', 'cosine', '--ema-decay', '0.9', '--output', str(tmp_path / 'a.pt')]
    result = CliRunner().invoke(main, [*arguments, *options])
    assert result.exit_code == 0, result.output
    tuned = load_checkpoint(tmp_path / 'a.pt', 'cpu')
    settings = tuned.training_config
    assert settings.augment_settings and settings.schedule == 'cosine' and settings.ema_decay == 0.9
    assert tuned.training_weights is not None
    assert tuned.history['finetune'][-1]['learning_rate'] == pytest.approx(0.5 * settings.finetune_learning_rate)
    # a further run on top of it sets its own: a constant rate, no average, no augmentation
    further = ['finetune', '--base', str(tmp_path / 'a.pt'), '--dataset', str(sample_dataset_path), '--epochs', '3']
    result = CliRunner().invoke(main, [*further, '--output', str(tmp_path / 'b.pt')])
    assert result.exit_code == 0, result.output
    again = load_checkpoint(tmp_path / 'b.pt', 'cpu')
    settings = again.training_config
    assert not settings.augment_settings and settings.schedule == 'constant' and settings.ema_decay == 0.0
    assert again.training_weights is None
    assert again.history['finetune'][-1]['learning_rate'] == pytest.approx(settings.finetune_learning_rate)


@pytest.mark.parametrize(('chemsys', 'spacegroups'), [('Li-O', ('225', '194')), ('O-Ti', ('136', '141'))])
def test_shipped_checkpoint_generates_offline(chemsys, spacegroups, tmp_path) -> None:
    """The default checkpoint comes with the package: no --checkpoint, no network."""
    assert shipped_checkpoint_path().stat().st_size < 10 * 2**20
    output = tmp_path / 'gen.json'
    arguments = ['generate', '--chemsys', chemsys, '--num-samples', '6', '--e-above-hull', '0', '--output', str(output)]
    for group in spacegroups:
        arguments += ['--spacegroup', group]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    meta = document['meta']
    assert meta['checkpoint_stage'] == 'finetuned' and len(document['samples']) == 6
    # N of N without a chain drawn again: those that broke the composition filter ended in a balanced last step
    assert meta['rejected'] == {} and meta['num_drawn'] == sum(s['origin'] == 'chain' for s in document['samples'])
    for sample in document['samples']:
        assert str(sample['spacegroup']) in spacegroups and sample['chemsys'] == chemsys


def test_shipped_checkpoint_ranks_the_paper_examples_first_among_training_arrangements(tmp_path) -> None:
    """The shipped model's score puts spinel first among the Al-Mg-O arrangements of Fd-3m and the double perovskite
    first among the Ba-In-O-Ta ones of Fm-3m; asked for known arrangements, the CLI returns them (marked ``library``)
    and records the setting, and a share above 1 is refused."""
    from aiida_wyckoffdiff.model.adapters import Conditions
    from aiida_wyckoffdiff.model.sampling import GenerationRequest, library_candidates, library_scores

    model = load_checkpoint(shipped_checkpoint_path(), torch.device('cpu')).model
    for chemsys, group, best in (
        (('Al', 'Mg', 'O'), 227, 'A2BC4_cF56_227_c_b_e:Al-Mg-O'),
        (('Ba', 'In', 'O', 'Ta'), 225, 'A2BC6D_cF40_225_c_a_e_b:Ba-In-O-Ta'),
    ):
        config = SamplingConfig(plausible=False)  # every arrangement, balanced or not, is ranked
        candidates = library_candidates(model, GenerationRequest(chemsys, (group,), 0.0), group, config)
        conditions = Conditions(torch.tensor([[float(e in chemsys) for e in model.config.elements]]),
                                torch.tensor([group]), torch.tensor([0.0]), torch.ones(1, 3))
        scores = library_scores(model, candidates, conditions, config, torch.Generator().manual_seed(0))
        assert len(candidates) >= 3 and candidates[int(scores.argmax())].label == best

    output = tmp_path / 'gen.json'
    arguments = ['generate', '--chemsys', 'Ba-In-O-Ta', '--spacegroup', '225', '--num-samples', '4', '--output',
                 str(output)]
    result = CliRunner().invoke(main, [*arguments, '--known-prototypes', '0.5'])
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert document['meta']['known_prototypes'] == 0.5 and len(document['samples']) == 4
    assert [sample['origin'] for sample in document['samples']].count('library') == 2
    refused = CliRunner().invoke(main, [*arguments, '--known-prototypes', '1.5'])
    assert refused.exit_code == 2 and '1.5' in refused.output
    # The shipped checkpoint has no energy head: the weight is recorded and changes nothing.
    assert document['meta']['energy_guidance'] == SamplingConfig.energy_guidance
    assert document['meta']['energy_head_rows'] is None
    refused = CliRunner().invoke(main, [*arguments, '--energy-guidance', '-1'])
    assert refused.exit_code == 2 and '-1' in refused.output
    assert document['meta']['energy_screen'] == SamplingConfig.energy_screen
    refused = CliRunner().invoke(main, [*arguments, '--energy-screen', '0'])
    assert refused.exit_code == 2 and "'--energy-screen': 0 is not in the range x>=1" in refused.output


def test_finetune_on_new_rows_mixes_in_the_dataset(cli_checkpoints, sample_dataset_path, tmp_path) -> None:
    """``--rows`` (what ``wyckoffdiff relaxation-rows`` writes) trains a fine-tuned checkpoint further on those rows
    with a share of the dataset's; the checkpoint records the hash of the rows it saw."""
    from aiida_wyckoffdiff.data import frame_sha256, load_dataset, mix_rows, write_dataset

    dataset = load_dataset(sample_dataset_path)
    rows = write_dataset(dataset[dataset['split'] == 'test'].head(4).assign(source='relaxation', e_above_hull=1.5),
                         tmp_path / 'rows.jsonl.gz')
    arguments = ['finetune', '--base', str(cli_checkpoints[1]), '--dataset', str(sample_dataset_path), '--rows', str(rows),
                 '--dataset-share', '0.5', '--val-rows', '4', '--epochs', '2', '--output', str(tmp_path / 'more.pt')]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    mixed = mix_rows(dataset, load_dataset(rows), dataset_share=0.5, val_rows=4)
    assert len(mixed) == 4 + 4 + 4
    tuned = load_checkpoint(tmp_path / 'more.pt', 'cpu')
    assert tuned.epoch == 2 and tuned.dataset_hash == frame_sha256(mixed)
    assert tuned.model.energy_head is None  # 4 rows are too few to fit one (tests/model/test_energy.py fits 84)
