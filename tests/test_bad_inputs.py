"""Checked inputs that no other test covered; docs/inputs.md lists every check with the test that covers it."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.launch import phase_diagram_builder

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')


@pytest.fixture
def code(aiida_localhost) -> orm.InstalledCode:
    return get_or_create_code(aiida_localhost)


def _li() -> orm.StructureData:
    return orm.StructureData(pymatgen=Structure(Lattice.cubic(3.5), ['Li', 'Li'], [[0, 0, 0], [0.5, 0.5, 0.5]]))


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'chemsys': 'Li-O-Li'}, "chemical system 'Li-O-Li' names an element twice"),
        ({'num_samples': 0}, "num_samples must be positive, not 0"),
        ({'steps': 0}, "steps must be positive, not 0"),
        ({'generate': {'guided': ['e_above_hull', 'colour']}}, r"cannot guide on \['colour'\]"),
        ({'realize_attempts': -1}, "realize_attempts must be positive, not -1"),
        ({'spacegroups_per_job': 0}, "spacegroups_per_job must be positive, not 0"),
        ({'structures_per_job': 0}, "structures_per_job must be positive, not 0"),
        ({'relax': {'settings': {'optimizer': 'LBFGS'}}}, "optimizer must be BFGS or FIRE, not 'LBFGS'"),
        ({'relax': {'relaxer': 'mace'}}, "unknown relaxer 'mace'; choose one of mattersim, chgnet, sevenn"),
    ],
)
def test_phase_diagram_refuses_bad_input_at_launch(code, change, message) -> None:
    """Refused as the builder is filled (or at the latest at launch): no process node is stored, nothing runs."""
    with pytest.raises(ValueError, match=message.replace('(', r'\(')):
        builder = phase_diagram_builder(change.pop('chemsys', 'Li-O'), code=code.full_label, spacegroups=[225])
        for name, value in change.items():
            if isinstance(value, dict):
                for inner, setting in value.items():
                    builder[name][inner] = setting
            else:
                builder[name] = value
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == 0


@pytest.mark.parametrize(
    ('shares', 'message'),
    [({'225': 3, '231': 1}, r"these are not: \{'231': 1\}"), ({'225': 0}, 'at least one of them positive')],
)
def test_phase_diagram_refuses_a_bad_share_of_samples(code, shares, message) -> None:
    """samples_per_spacegroup (a rounds run's allocation) names real groups and whole, non-negative samples."""
    builder = phase_diagram_builder('Li-O', code=code.full_label, spacegroups=[225])
    with pytest.raises(ValueError, match=message):
        builder.samples_per_spacegroup = orm.Dict(shares)
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == 0


def test_relax_job_needs_a_structure(code) -> None:
    from aiida_wyckoffdiff.calculations.relax import RelaxCalculation

    with pytest.raises(ValueError, match='give at least one structure to relax'):
        run_get_node(RelaxCalculation, code=code, structures={})
    with pytest.raises(ValueError, match="optimizer must be BFGS or FIRE, not 'GD'"):
        run_get_node(RelaxCalculation, code=code, structures={'li': _li()}, settings={'optimizer': 'GD'})


def test_code_of_another_environment_is_not_silently_reused(aiida_localhost) -> None:
    orm.InstalledCode(computer=aiida_localhost, filepath_executable='/elsewhere/bin/wyckoffdiff', label='wyckoffdiff').store()
    with pytest.raises(FileExistsError, match='runs /elsewhere/bin/wyckoffdiff, not this environment'):
        get_or_create_code(aiida_localhost)


def test_lineage_of_an_unknown_node_is_one_line(aiida_profile) -> None:
    result = CliRunner().invoke(main, ['lineage', '999999', '--profile', aiida_profile.name])
    assert result.exit_code == 1 and "Error: no single node '999999' in this profile" in result.output
    structure = _li().store()
    result = CliRunner().invoke(main, ['lineage', str(structure.pk), '--profile', aiida_profile.name])
    assert result.exit_code == 1 and 'was not created by a process of this package' in result.output


@pytest.fixture
def no_potential(monkeypatch) -> None:
    """Fail the test if the command gets as far as loading a potential: bad inputs are refused before that."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('the potential was loaded before the input was checked')

    monkeypatch.setattr('aiida_wyckoffdiff.potentials.load_potential', refuse)


@pytest.mark.usefixtures('no_potential')
def test_relax_of_an_unreadable_file_is_one_line(tmp_path) -> None:
    garbage = tmp_path / 'garbage.cif'
    garbage.write_text('data_nothing\n_cell_length_a 3\n')
    result = CliRunner().invoke(main, ['relax', str(garbage), '--output', str(tmp_path / 'relaxed.jsonl')])
    assert result.exit_code == 1 and f'Error: {garbage}: not a structure file pymatgen can read' in result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'relaxed.jsonl').exists()


@pytest.mark.usefixtures('no_potential')
@pytest.mark.parametrize(
    ('item', 'message'),
    [
        ('/nonexistent.cif', '/nonexistent.cif: no such file, nor a protostructure label'),
        ('.', '.: a directory, not a structure file, nor a protostructure label'),
        ('A2B_cF12_225_c:Li-O', "malformed protostructure label 'A2B_cF12_225_c:Li-O'"),
    ],
)
def test_relax_of_a_missing_file_or_bad_label_is_one_line_before_the_potential_loads(tmp_path, item, message) -> None:
    result = CliRunner().invoke(main, ['relax', item, '--output', str(tmp_path / 'relaxed.jsonl')])
    assert result.exit_code == 1 and f'Error: {message}' in result.output, result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'relaxed.jsonl').exists()


@pytest.mark.usefixtures('no_potential')
def test_hull_of_a_results_file_whose_header_lacks_a_field_is_one_line(tmp_path) -> None:
    relaxed = tmp_path / 'relaxed.jsonl'
    relaxed.write_text(json.dumps({'kind': 'header', 'potential': 'chgnet'}) + '\n')
    result = CliRunner().invoke(main, ['hull', str(relaxed), '--output-dir', str(tmp_path / 'hull')])
    assert result.exit_code == 2 and 'line 1 (header) of the relax results lacks checkpoint_sha256' in result.output
    assert 'Traceback' not in result.output and not (tmp_path / 'hull').exists()


def test_hull_refuses_other_weights_than_those_that_relaxed(tmp_path) -> None:
    relaxed = tmp_path / 'relaxed.jsonl'
    relaxed.write_text(json.dumps({'kind': 'header', 'potential': 'chgnet', 'checkpoint_sha256': '0' * 64}) + '\n')
    result = CliRunner().invoke(main, ['hull', str(relaxed), '--output-dir', str(tmp_path / 'hull')])
    assert result.exit_code == 1 and 'was relaxed with chgnet weights 000000000000' in result.output
    assert 'pass the same --checkpoint' in result.output and not (tmp_path / 'hull').exists()


def test_setup_without_a_profile_says_how_to_make_one(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    environment = {**os.environ, 'AIIDA_PATH': str(tmp_path)}  # an empty configuration: no profile at all
    result = subprocess.run([str(Path(sys.executable).parent / 'wyckoffdiff'), 'setup'], env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert 'Error: no AiiDA profile to set up' in result.stderr and 'verdi presto' in result.stderr
