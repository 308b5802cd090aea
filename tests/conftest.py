"""Shared fixtures: the committed sample of real Materials Project rows and the shared data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# aiida-core looks `verdi` up on PATH once, when it is imported, to start daemons: make it this
# environment's even when the tests run as `.venv/bin/python -m pytest` without activation.
os.environ['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'

import pandas as pd
import pytest
from pymatgen.core import Structure

from aiida_wyckoffdiff.data import find_data_dir
from aiida_wyckoffdiff.exceptions import DataNotFoundError

pytest_plugins = ['aiida.tools.pytest_fixtures']

SAMPLE_DIR = Path(__file__).parent / 'data'
SPINEL_LABEL = 'A2BC4_cF56_227_c_b_e:Al-Mg-O'


@pytest.fixture(scope='session')
def sample_dir() -> Path:
    """A data folder of real rows (see tests/data/README.md), usable as ``--data-dir``."""
    return SAMPLE_DIR


@pytest.fixture(scope='session')
def sample_rows() -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DIR / 'mp_structures.csv.gz')


@pytest.fixture(scope='session')
def spinel_cif(sample_rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MgAl2O4 spinel (mp-3536) as the P1 CIF the Materials Project data stores."""
    path = tmp_path_factory.mktemp('spinel') / 'MgAl2O4.cif'
    path.write_text(sample_rows.set_index('material_id').loc['mp-3536', 'cif'])
    return path


@pytest.fixture(scope='session')
def sample_structures(sample_rows: pd.DataFrame) -> dict[str, Structure]:
    return {row.material_id: Structure.from_str(row.cif, fmt='cif') for row in sample_rows.itertuples()}


@pytest.fixture(scope='session')
def sample_dataset_path(sample_dir, tmp_path_factory):
    """The committed real sample rows as a dataset file, built once per session."""
    from aiida_wyckoffdiff.data import build_dataset

    path = tmp_path_factory.mktemp('dataset') / 'sample.jsonl.gz'
    build_dataset(sample_dir, output=path, processes=1, progress=False)
    return path


@pytest.fixture(scope='session')
def shared_data_dir() -> Path:
    """The full shared data folder; tests that need it skip, saying why, where it is absent."""
    try:
        return find_data_dir()
    except DataNotFoundError as exception:
        pytest.skip(str(exception))


@pytest.fixture
def li_o_generate_inputs():
    """Inputs of the smallest generate job the tests submit: Li-O in Fm-3m from the shipped checkpoint.

    A factory, called inside the test once its profile is loaded: ``li_o_generate_inputs(code, num_samples=2, ...)``.
    """
    from aiida import orm

    from aiida_wyckoffdiff.model.checkpoint import shipped_checkpoint_path
    from aiida_wyckoffdiff.nodes import CheckpointData

    def inputs(code: orm.AbstractCode, num_samples: int = 1, **extra: object) -> dict[str, object]:
        checkpoint = CheckpointData.get_or_create(shipped_checkpoint_path(), kind='wyckoffdiff')
        return {'code': code, 'checkpoint': checkpoint, 'chemsys': orm.Str('Li-O'), 'spacegroups': orm.List([225]),
                'num_samples': orm.Int(num_samples), **extra}

    return inputs
