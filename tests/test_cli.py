"""The ``wyckoffdiff`` command line, driven through click's runner."""

from __future__ import annotations

from click.testing import CliRunner

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.symmetry import structure_label

from .conftest import SPINEL_LABEL


def test_label_of_spinel(spinel_cif) -> None:
    result = CliRunner().invoke(main, ['label', str(spinel_cif)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == SPINEL_LABEL


def test_realize_writes_a_cif_with_the_same_label(tmp_path) -> None:
    from pymatgen.core import Structure

    output = tmp_path / 'spinel.cif'
    result = CliRunner().invoke(main, ['realize', SPINEL_LABEL, '--seed', '1', '--output', str(output)])
    assert result.exit_code == 0, result.output
    assert structure_label(Structure.from_file(output)) == SPINEL_LABEL
    labelled = CliRunner().invoke(main, ['label', str(output)])
    assert labelled.output.strip() == SPINEL_LABEL


def test_bad_input_is_one_line_and_non_zero(tmp_path) -> None:
    garbage = tmp_path / 'garbage.cif'
    garbage.write_text('data_nothing\n_cell_length_a 3\n')
    runner = CliRunner()
    cases = {
        ('label', str(garbage)): 'not a structure file',
        ('realize', 'AB_cF8_225_a_b:Li-Xx'): "unknown element 'Xx'",
        ('realize', 'A_cP1_231_a:Li'): 'space group 231 does not exist',
        ('realize', 'A_cP1_221_z:Li'): "no Wyckoff position 'z'",
        ('realize', 'nonsense'): 'malformed protostructure label',
        ('realize', 'A_aP1_1_a:Li', '--attempts', '2', '--seed', '0'): 'no candidate in 2 attempts',
        ('data', 'build', '--data-dir', str(tmp_path)): 'no mp_structures.csv.gz found',
        ('generate', '--chemsys', 'Li-O', '--spacegroup', '225', '--checkpoint-sha256', '0' * 64): 'sha256 mismatch',
    }
    for arguments, message in cases.items():
        result = runner.invoke(main, list(arguments))
        assert result.exit_code == 1, arguments
        assert message in result.output, result.output
        assert 'Traceback' not in result.output


def test_data_build_prints_statistics(sample_dir, tmp_path) -> None:
    output = tmp_path / 'ds.jsonl.gz'
    result = CliRunner().invoke(main, ['data', 'build', '--data-dir', str(sample_dir), '--output', str(output), '--processes', '1'])
    assert result.exit_code == 0, result.output
    assert 'rows kept: 118' in result.output
    assert 'round-trip' in result.output
    assert output.is_file()


def test_expected_sha256_needs_a_checkpoint_file(tmp_path) -> None:
    result = CliRunner().invoke(main, ['relax', str(tmp_path / 'any.cif'), '--checkpoint-sha256', '0' * 64])
    assert result.exit_code == 2
    assert '--checkpoint-sha256 needs --checkpoint FILE' in result.output
