"""The AiiDA layer's foundations: checkpoint nodes, the realize calcfunction, ``wyckoffdiff setup``."""

from __future__ import annotations

import hashlib

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from aiida.plugins import CalculationFactory, DataFactory
from click.testing import CliRunner

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.symmetry import structure_label

from .conftest import SPINEL_LABEL

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')


def test_checkpoint_is_stored_once_per_content(tmp_path) -> None:
    checkpoint_cls = DataFactory('wyckoffdiff.checkpoint')
    weights = tmp_path / 'model.ckpt'
    weights.write_bytes(b'weights v1')
    first = checkpoint_cls.get_or_create(weights, kind='wyckoffdiff')
    again = checkpoint_cls.get_or_create(weights, kind='wyckoffdiff')
    assert first.pk == again.pk
    assert first.sha256 == hashlib.sha256(b'weights v1').hexdigest()
    weights.write_bytes(b'weights v2')
    other = checkpoint_cls.get_or_create(weights, kind='wyckoffdiff')
    assert other.pk != first.pk
    assert other.get_content(mode='rb') == b'weights v2'


def test_realize_calcfunction_records_structures_and_rejections() -> None:
    realize = CalculationFactory('wyckoffdiff.realize')
    first = orm.List([SPINEL_LABEL, 'A2B_cF12_225_c_a:Li-O', SPINEL_LABEL])
    second = orm.List(['A_aP1_1_a:Li', 'A2B_cF12_225_c_a:Li-O'])
    outputs, node = run_get_node(realize, batch_0=first, batch_1=second, seed=orm.Int(0), attempts=orm.Int(3))
    assert node.is_finished_ok
    report = outputs['report'].get_list()
    assert [entry['label'] for entry in report] == [SPINEL_LABEL, 'A2B_cF12_225_c_a:Li-O', 'A_aP1_1_a:Li']
    assert report[1]['sources'] == ['batch_0', 'batch_1']
    assert [entry['ok'] for entry in report] == [True, True, False]
    assert 'came out as' in report[2]['reason']
    for entry in report[:2]:
        structure = outputs[entry['output']]
        assert structure_label(structure.get_pymatgen_structure()) == entry['label']
        assert structure.creator.pk == node.pk
    assert node.inputs.seed.value == 0


def test_realize_calcfunction_draws_candidates_with_other_seeds() -> None:
    """K = 3: three realizations per label (the first as the K = 1 run draws it), the others named after it."""
    realize = CalculationFactory('wyckoffdiff.realize')
    labels = orm.List([SPINEL_LABEL, 'A_aP1_1_a:Li'])
    single, _ = run_get_node(realize, batch_0=labels, seed=orm.Int(0), attempts=orm.Int(3))
    outputs, node = run_get_node(realize, batch_0=labels, seed=orm.Int(0), attempts=orm.Int(3), candidates=orm.Int(3))
    report = outputs['report'].get_list()
    assert report[0]['alternatives'] == ['structure_00000_c1', 'structure_00000_c2'] and 'alternatives' not in report[1]
    assert set(outputs) == {'report', 'structure_00000', 'structure_00000_c1', 'structure_00000_c2'}
    spinels = [outputs[name].get_pymatgen_structure() for name in ('structure_00000', *report[0]['alternatives'])]
    assert all(structure_label(s) == SPINEL_LABEL for s in spinels)
    assert spinels[0].lattice.abc == single['structure_00000'].get_pymatgen_structure().lattice.abc
    assert len({round(s.lattice.a, 6) for s in spinels}) == 3  # different free parameters, not one draw thrice
    assert node.inputs.candidates.value == 3


def test_identical_rerun_is_a_cache_hit() -> None:
    realize = CalculationFactory('wyckoffdiff.realize')
    inputs = {'batch_0': orm.List([SPINEL_LABEL]), 'seed': orm.Int(5), 'attempts': orm.Int(10)}
    with enable_caching():
        first, first_node = run_get_node(realize, **inputs)
        second, second_node = run_get_node(realize, **{**inputs, 'batch_0': orm.List([SPINEL_LABEL])})
    assert second_node.base.caching.get_cache_source() == first_node.uuid
    assert second['structure_00000'].cell == first['structure_00000'].cell


def test_setup_creates_computer_and_code_idempotently() -> None:
    runner = CliRunner()
    first = runner.invoke(main, ['setup'])
    assert first.exit_code == 0, first.output
    code = orm.load_code('wyckoffdiff@localhost')
    assert str(code.filepath_executable).endswith('wyckoffdiff')
    second = runner.invoke(main, ['setup'])
    assert second.exit_code == 0, second.output
    assert orm.load_code('wyckoffdiff@localhost').pk == code.pk
    assert len(orm.QueryBuilder().append(orm.Computer, filters={'label': 'localhost'}).all()) == 1


def test_setup_for_slurm_and_a_clash_with_an_existing_computer() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ['setup', '--computer', 'localhost-slurm', '--scheduler', 'core.slurm'])
    assert result.exit_code == 0, result.output
    assert orm.load_computer('localhost-slurm').scheduler_type == 'core.slurm'
    assert orm.load_code('wyckoffdiff@localhost-slurm').computer.label == 'localhost-slurm'
    assert runner.invoke(main, ['setup']).exit_code == 0
    clash = runner.invoke(main, ['setup', '--scheduler', 'core.slurm'])
    assert clash.exit_code == 1
    assert 'computer localhost submits through core.direct, not core.slurm: pass another --computer label' in clash.output
