"""``wyckoffdiff export``: structures of a group or run to files any code reads, with their lineage beside them."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from ase.io import read
from click.testing import CliRunner

from aiida_wyckoffdiff.cli import main

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

LABELS = ['A2B_cF12_225_c_a:Li-O', 'AB_cF8_225_a_b:Li-O']


@pytest.fixture
def realized_group() -> orm.Group:
    """Two structures realized by the package's calcfunction, so that each has a lineage, in a group."""
    outputs, _ = run_get_node(
        CalculationFactory('wyckoffdiff.realize'), batch_0=orm.List(LABELS), seed=orm.Int(3), attempts=orm.Int(20)
    )
    group = orm.Group(label='test/export').store()
    group.add_nodes([node for key, node in outputs.items() if key.startswith('structure_')])
    return group


@pytest.mark.parametrize('file_format, suffix', [('cif', 'cif'), ('poscar', 'vasp'), ('extxyz', 'extxyz')])
def test_export_writes_structures_and_lineage(realized_group, tmp_path, file_format, suffix) -> None:
    result = CliRunner().invoke(main, ['export', realized_group.label, str(tmp_path), '--format', file_format])
    assert result.exit_code == 0, result.output
    metadata = json.loads((tmp_path / 'metadata.json').read_text())
    nodes = {node.pk: node for node in realized_group.nodes}
    assert len(metadata) == len(nodes) == 2
    for filename, entry in metadata.items():
        assert filename.endswith(f'.{suffix}')
        node = nodes[entry['pk']]
        atoms = read(tmp_path / filename)
        assert sorted(atoms.get_chemical_symbols()) == sorted(site.kind_name for site in node.sites)
        assert atoms.get_volume() == pytest.approx(node.get_cell_volume(), rel=1e-4)
        (step,) = entry['lineage']
        assert step['process'] == 'wyckoffdiff.realize' and step['label'] in LABELS
        report = {item['label']: item for item in node.creator.outputs.report.get_list()}[step['label']]
        assert step['seed'] == report['realized_by'][step['output']]['seed']  # the draw's own, spawned from seed 3
        assert step['realized'] == f"by PyXtal, seed {step['seed']}"


def test_export_of_a_single_structure_by_pk(realized_group, tmp_path) -> None:
    node = next(iter(realized_group.nodes))
    result = CliRunner().invoke(main, ['export', str(node.pk), str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / 'metadata.json').read_text())[f'node_{node.pk}.cif']['uuid'] == node.uuid


def test_entries_need_relaxed_structures(realized_group, tmp_path) -> None:
    """Realized, never relaxed: there is no energy to put in an entry, and the message says what to do instead."""
    result = CliRunner().invoke(main, ['export', realized_group.label, str(tmp_path), '--format', 'entries'])
    assert result.exit_code == 1 and 'was not relaxed by a phase-diagram run' in result.output
    assert not (tmp_path / 'entries.json').exists()


def test_export_of_something_else_says_what_it_is(tmp_path) -> None:
    runner = CliRunner()
    absent = runner.invoke(main, ['export', 'no/such/group', str(tmp_path)])
    assert absent.exit_code == 1 and 'neither a group label nor a single node' in absent.output
    number = orm.Int(5).store()
    wrong = runner.invoke(main, ['export', str(number.pk), str(tmp_path)])
    assert wrong.exit_code == 1 and 'neither a group, a structure nor a run' in wrong.output
    assert not (tmp_path / 'metadata.json').exists()
