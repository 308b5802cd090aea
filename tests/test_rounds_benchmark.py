"""benchmarks/rounds.py: round 1's relaxations as fine-tuning rows, and its CI-size run end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aiida_wyckoffdiff.model.config import SamplingConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'rounds.py'


@pytest.fixture
def rounds(monkeypatch):  # noqa: ANN201 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location('rounds_benchmark', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec.loader.exec_module(module)
    return module


def test_finetuning_rows_keep_the_lowest_of_a_label_and_leave_pruned_out(rounds, sample_structures) -> None:
    """Two relaxations of one crystal give one row with the lower energy; a pruned relaxation gives none."""
    from aiida_wyckoffdiff.symmetry import structure_label

    spinel, alloy = sample_structures['mp-3536'], sample_structures['mp-1039019']  # MgAl2O4, MgAl
    relaxed = [
        {'structure': spinel, 'e_above_hull': 0.30, 'pruned': None, 'formation_energy_per_atom': -2.9,
         'potential': 'chgnet'},
        {'structure': spinel, 'e_above_hull': 0.05, 'pruned': None, 'formation_energy_per_atom': -3.1,
         'potential': 'chgnet'},
        {'structure': alloy, 'e_above_hull': 2.5, 'pruned': '2.5 eV/atom above the hull after 20 steps',
         'formation_energy_per_atom': -0.5, 'potential': 'chgnet'},
    ]
    rows = rounds.finetuning_rows(relaxed, 'Al-Mg-O')
    assert len(rows) == 1
    (row,) = rows
    assert row['label'] == structure_label(spinel)
    assert row['e_above_hull'] == 0.05 and row['relaxations'] == 2
    assert row['split'] == 'train' and row['source'] == 'relaxation'
    assert row['material_id'] == 'round1-Al-Mg-O-1'


def test_rounds_benchmark_quick_run(sample_dir, sample_dataset_path, tmp_path) -> None:
    """Round 1, fine-tuning on its relaxations and round 2 from the new checkpoint, on the committed sample rows."""
    output = tmp_path / 'rounds.json'
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), '--quick', '--data-dir', str(sample_dir), '--dataset',
         str(sample_dataset_path), '--output', str(output), '--round-2', 'even', 'allocated+new'],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(output.read_text())['systems']['Li-O']
    arms = result['arms']
    assert [(arm['round'], arm['target'], arm.get('variant')) for arm in arms] == [
        (1, 0.0, None), (2, 0.0, 'even'), (2, 0.3, 'even'), (2, 0.0, 'allocated+new'), (2, 0.3, 'allocated+new'),
        (None, None, None)]
    assert 'ckpt=' not in arms[0]['generator'] and all('ckpt=' in arm['generator'] for arm in arms[1:5])
    # The allocated arms share their 4 samples by round 1's relaxations and relax none of round 1's protostructures.
    assert all(sum(arm['allocation']['counts'].values()) == 4 for arm in arms[3:5]) and arms[1]['allocation'] is None
    first = set(arms[0]['e_above_hull_by_request'])
    assert first & set(arms[1]['e_above_hull_by_request']), 'the even round 2 draws round 1 again'
    assert all(not set(arm['e_above_hull_by_request']) & first for arm in arms[3:5])
    assert arms[-1]['generator'].startswith('random')
    assert result['finetune']['rows'] >= 1 and result['finetune']['core_minutes'] > 0
    assert result['finetune']['training_rows'] > result['finetune']['rows'], 'dataset rows are mixed in'
    weight = str(SamplingConfig.energy_guidance)
    assert all(arm['energy_guidance'] == SamplingConfig.energy_guidance for arm in arms[1:3])
    assert set(result['round_2_against_round_1']) == {weight, f'{weight},allocated+new'}
    comparison = result['round_2_against_round_1'][weight]
    assert comparison['hits'] == [arms[0]['hits'], arms[1]['hits']]
    assert comparison['hits_per_core_minute'][1] <= arms[1]['hits_per_core_minute'], 'fine-tuning costs are added'
    after = result['condition_after'][weight]
    assert after['targets'] == [0.0, 0.3] and 0 <= after['p_low_ends_lower'] <= 1
    assert result['condition_before'] is None, 'the quick run samples the shipped checkpoint at target 0 only'
