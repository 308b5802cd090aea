"""Tiny seeded models and batches: every model test runs in well under a second on one CPU thread."""

from __future__ import annotations

import pytest
import torch

from aiida_wyckoffdiff.model.adapters import Condition, Conditions
from aiida_wyckoffdiff.model.config import ModelConfig
from aiida_wyckoffdiff.model.diffusion import WyckoffDiffusion, build_model
from aiida_wyckoffdiff.model.encoding import ProtoBatch, collate, encode, position_table
from aiida_wyckoffdiff.symmetry import Protostructure

ELEMENTS = ('Li', 'O', 'Mg', 'Al', 'Ti')
LABELS = ('A2BC4_cF56_227_c_b_e:Al-Mg-O', 'A2B_cF12_225_c_a:Li-O', 'A2B_tP6_136_f_a:O-Ti', 'AB_cF8_225_a_b:Mg-O')


@pytest.fixture(scope='session', autouse=True)
def _single_thread() -> None:
    """Session-wide, so session fixtures that train see the same float order as the tests comparing with them."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def tiny_config() -> ModelConfig:
    return ModelConfig(
        elements=ELEMENTS, max_count=4, num_layers=2, hidden_dim=16, condition_dim=8, adapter_dim=8, num_timesteps=20
    )


@pytest.fixture
def tiny_model(tiny_config: ModelConfig) -> WyckoffDiffusion:
    return build_model(tiny_config).eval()


@pytest.fixture(scope='session')
def protostructures() -> list[Protostructure]:
    return [Protostructure.from_label(label) for label in LABELS]


@pytest.fixture
def tiny_batch(protostructures: list[Protostructure], tiny_config: ModelConfig) -> ProtoBatch:
    crystals = [encode(p, tiny_config.elements, tiny_config.max_count) for p in protostructures]
    return collate(crystals, len(tiny_config.elements), position_table().offset)


@pytest.fixture
def tiny_conditions(tiny_batch: ProtoBatch) -> Conditions:
    size = tiny_batch.spacegroup.shape[0]
    return Conditions(
        chemsys=torch.randint(0, 2, (size, len(ELEMENTS))).float(),
        spacegroup=tiny_batch.spacegroup,
        e_above_hull=torch.rand(size),
        mask=torch.ones(size, len(Condition)),
    )
