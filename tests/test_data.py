"""Dataset build from the real sample rows (and, where present, the whole shared file)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest

from aiida_wyckoffdiff.data import (
    DATA_DIR_VARIABLE,
    build_dataset,
    dataset_hash,
    find_data_dir,
    load_dataset,
    mix_rows,
    protostructure_of,
    spacegroup_counts,
    split_of,
    training_spacegroups,
)
from aiida_wyckoffdiff.exceptions import DataNotFoundError


def test_missing_data_says_what_to_do(tmp_path, monkeypatch) -> None:
    with pytest.raises(DataNotFoundError, match='--data-dir'):
        find_data_dir(tmp_path / 'nowhere')
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(DataNotFoundError, match=DATA_DIR_VARIABLE):
        find_data_dir()


def test_environment_variable_locates_data(sample_dir, monkeypatch) -> None:
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(sample_dir))
    assert find_data_dir() == sample_dir.resolve()


def test_build_sample(sample_dir, sample_rows, tmp_path) -> None:
    report = build_dataset(sample_dir, output=tmp_path / 'ds.jsonl.gz', processes=2, progress=False)
    table = load_dataset(report.path)
    assert report.rows_read == len(sample_rows)
    assert report.rows_kept == len(table) == len(sample_rows)
    assert report.round_trip_fraction == 1.0
    assert sum(report.splits.values()) == len(table)
    assert set(table['split']) <= {'train', 'val', 'test'}
    assert 'rows kept: 118' in report.summary()
    spinel = table.set_index('material_id').loc['mp-3536']
    assert spinel['label'] == 'A2BC4_cF56_227_c_b_e:Al-Mg-O'
    assert spinel['chemsys'] == 'Al-Mg-O'
    assert spinel['num_atoms'] == 56
    for _, row in table.iterrows():
        assert protostructure_of(row).label == row['label']
    merged = table.merge(sample_rows, on='material_id')
    assert (merged['spacegroup_x'] == merged['spacegroup_y']).all()
    assert (merged['formation_energy_per_atom_x'] == merged['formation_energy_per_atom_y']).all()


def test_split_is_deterministic_and_balanced() -> None:
    ids = [f'mp-{i}' for i in range(4000)]
    splits = pd.Series([split_of(i) for i in ids]).value_counts(normalize=True)
    assert splits['train'] == pytest.approx(0.8, abs=0.03)
    assert splits['test'] == pytest.approx(0.1, abs=0.02)
    # Another interpreter with another string-hash seed must agree: the split may not depend on hash().
    script = f'from aiida_wyckoffdiff.data import split_of; print(",".join(split_of(i) for i in {ids[:200]!r}))'
    other = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True,
                           env={**os.environ, 'PYTHONHASHSEED': '12345'})
    assert other.stdout.strip().split(',') == [split_of(i) for i in ids[:200]]


def test_extra_file_rows_without_energy_are_dropped(sample_dir, tmp_path) -> None:
    report = build_dataset(sample_dir, include_extra=True, output=tmp_path / 'ds.jsonl.gz', processes=1, progress=False)
    assert report.rows_read == 128
    assert report.dropped == {'no formation energy': 4}
    assert report.rows_kept == 124


def test_corrupt_cif_is_dropped_and_the_rest_kept(sample_dir, tmp_path) -> None:
    data = tmp_path / 'data'
    data.mkdir()
    rows = pd.read_csv(sample_dir / 'mp_structures.csv.gz')
    rows.loc[0, 'cif'] = rows.loc[0, 'cif'][:200]
    rows.to_csv(data / 'mp_structures.csv.gz', index=False)
    report = build_dataset(data, output=tmp_path / 'ds.jsonl.gz', processes=1, progress=False)
    assert report.dropped == {'CIF does not parse': 1}
    assert report.rows_kept == len(rows) - 1


def test_unreadable_dataset_is_reported(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match='wyckoffdiff data build'):
        load_dataset(tmp_path / 'absent.jsonl.gz')
    broken = tmp_path / 'broken.jsonl.gz'
    broken.write_bytes(b'not gzip at all')
    with pytest.raises(DataNotFoundError, match='rebuild it'):
        load_dataset(broken)


def test_dataset_hash_changes_with_content(sample_dir, tmp_path) -> None:
    one = build_dataset(sample_dir, output=tmp_path / 'a.jsonl.gz', processes=1, limit=20, progress=False)
    two = build_dataset(sample_dir, output=tmp_path / 'b.jsonl.gz', processes=1, limit=30, progress=False)
    shutil.copy(one.path, tmp_path / 'c.jsonl.gz')
    assert dataset_hash(one.path) == dataset_hash(tmp_path / 'c.jsonl.gz')
    assert dataset_hash(one.path) != dataset_hash(two.path)


def test_rebuilt_dataset_keeps_its_hash(sample_dir, tmp_path) -> None:
    """The same rows built again, later and under another name, give the same file: a checkpoint's dataset_hash
    (what `--resume` checks) does not change when the cache is rebuilt."""
    one = build_dataset(sample_dir, output=tmp_path / 'a.jsonl.gz', processes=1, limit=20, progress=False)
    time.sleep(1.1)  # gzip stores whole seconds
    again = build_dataset(sample_dir, output=tmp_path / 'b.jsonl.gz', processes=1, limit=20, progress=False)
    assert dataset_hash(one.path) == dataset_hash(again.path)
    assert load_dataset(again.path).equals(load_dataset(one.path))


@pytest.mark.slow
def test_mixed_rows_keep_the_dataset_share(sample_dataset_path) -> None:
    """New rows are training rows; dataset rows make the requested share of the training rows; val rows as asked."""
    dataset = load_dataset(sample_dataset_path)
    rows = dataset[dataset['split'] == 'test'].head(6).assign(source='relaxation')
    mixed = mix_rows(dataset, rows, dataset_share=0.75, val_rows=5, seed=0)
    train = mixed[mixed['split'] == 'train']
    assert (train['source'] == 'relaxation').sum() == 6 and (train['source'] != 'relaxation').sum() == 18
    assert (mixed['split'] == 'val').sum() == 5 and set(mixed['split']) == {'train', 'val'}
    assert mixed.equals(mix_rows(dataset, rows, dataset_share=0.75, val_rows=5, seed=0))
    assert len(mix_rows(dataset, rows, dataset_share=0.0, val_rows=5)) == 11
    with pytest.raises(ValueError, match='dataset_share'):
        mix_rows(dataset, rows, dataset_share=1.0)


def test_whole_shared_dataset_round_trips(shared_data_dir, tmp_path) -> None:
    """Structure -> label -> Protostructure -> label over all ~30k rows: at least 99 % must survive."""
    report = build_dataset(shared_data_dir, output=tmp_path / 'full.jsonl.gz', progress=False)
    print(report.summary())
    assert report.rows_read > 30000
    assert report.round_trip_fraction >= 0.99, report.summary()
    # The shipped space-group frequencies (the workflow's default scan) are this build's.
    counts = spacegroup_counts(load_dataset(report.path))
    assert list(counts)[:20] == training_spacegroups(20)
