"""Realization from real crystals: the shipped template library, substitution, the bond check, provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.data import MAIN_FILE, split_of
from aiida_wyckoffdiff.files import file_sha256
from aiida_wyckoffdiff.provenance import lineage
from aiida_wyckoffdiff.realize import _predicted_cell, realize
from aiida_wyckoffdiff.symmetry import Protostructure, structure_label
from aiida_wyckoffdiff.templates import bond_problem, fitted_volume, prototype_of, shipped_templates, substitute

from .conftest import SPINEL_LABEL

# Spinel with elements no training spinel has: the geometry must come from a crystal of other elements.
NEW_SPINEL = 'A2BC4_cF56_227_c_b_e:Ga-Mg-S'


def test_no_validation_or_test_crystal_is_a_template(sample_rows) -> None:
    """Held-out checks read nothing from the templates: every template is a training-split crystal."""
    library = shipped_templates()
    ids = {t.material_id for templates in library.by_prototype.values() for t in templates}
    assert len(ids) == len(library) > 20000
    assert {split_of(material_id) for material_id in ids} == {'train'}
    held_out = {m for m in sample_rows['material_id'] if split_of(m) != 'train'}
    assert held_out and not held_out & ids


def test_library_records_the_data_it_was_built_from(shared_data_dir) -> None:
    assert shipped_templates().data_sha256 == file_sha256(shared_data_dir / MAIN_FILE)


def test_templates_are_ranked_by_chemical_similarity() -> None:
    templates = shipped_templates().templates_for(SPINEL_LABEL, 3)
    assert templates[0].material_id == 'mp-3536'  # MgAl2O4 itself: distance 0
    assert all(prototype_of(t.label) == prototype_of(SPINEL_LABEL) for t in templates)
    distances = [t.distance_to(Protostructure.from_label(SPINEL_LABEL)) for t in templates]
    assert distances == sorted(distances) and distances[0] == 0 < distances[-1]


def test_substitution_keeps_the_orbits_and_predicts_the_volume() -> None:
    protostructure = Protostructure.from_label(NEW_SPINEL)
    template = shipped_templates().templates_for(protostructure, 1)[0]
    assert template.label != NEW_SPINEL
    structure = substitute(protostructure, template)
    assert structure_label(structure) == NEW_SPINEL
    assert structure.composition.reduced_composition.as_dict() == {'Mg': 1, 'Ga': 2, 'S': 4}
    assert structure.volume != pytest.approx(template.structure.volume, rel=0.01)  # scaled for the new elements
    assert bond_problem(structure) is None


def test_bond_check_names_the_overlapping_atoms(spinel_cif) -> None:
    spinel = Structure.from_file(spinel_cif)
    assert bond_problem(spinel) is None
    squeezed = spinel.copy()
    squeezed.scale_lattice(spinel.volume * 0.2)
    problem = bond_problem(squeezed)
    assert problem is not None and 'Å apart, below 0.6 of their covalent radii' in problem
    assert problem.split()[0] in ('Al-O', 'O-Al', 'Mg-O', 'O-Mg', 'O-O', 'Al-Al', 'Mg-Al', 'Al-Mg')


def test_a_failing_template_falls_back_to_pyxtal_with_the_reason() -> None:
    rocksalt = shipped_templates().templates_for('AB_cF8_225_a_b:F-Li', 1)[0]
    result = realize(SPINEL_LABEL, seed=0, template=rocksalt)
    assert result.ok and result.template is None
    assert structure_label(result.structure) == SPINEL_LABEL
    (reason,) = result.rejections
    assert reason.startswith(f'template {rocksalt.material_id}: ') and 'is not of the prototype' in reason


@pytest.mark.usefixtures('aiida_profile_clean')
def test_realization_records_its_template_and_lineage_names_it() -> None:
    """The template crystal is an input node (material id, split, data sha256); lineage says where a structure's
    geometry came from, and one without a template says PyXtal's seed."""
    from aiida_wyckoffdiff.calculations.realize import template_nodes

    labels = [NEW_SPINEL, 'A_aP1_1_a:Li', 'AB_cF8_225_a_b:Cs-I']
    templates = template_nodes(labels, 2, shipped_templates())
    assert templates and all(node.base.attributes.get('split') == 'train' for node in templates.values())
    again = template_nodes(labels, 2, shipped_templates())
    assert {k: n.pk for k, n in again.items()} == {k: n.pk for k, n in templates.items()}, 'reused, not stored again'
    realize_calc = CalculationFactory('wyckoffdiff.realize')
    outputs, node = run_get_node(realize_calc, batch_0=orm.List(labels), seed=orm.Int(0), attempts=orm.Int(20),
                                 candidates=orm.Int(2), method=orm.Str('template'), **templates)
    report = {entry['label']: entry for entry in outputs['report'].get_list()}
    spinel = report[NEW_SPINEL]
    assert spinel['realized_by'][spinel['output']]['template'] == templates_first(NEW_SPINEL)
    (step,) = lineage(outputs[spinel['output']])
    assert step['realized'] == f'from {templates_first(NEW_SPINEL)} (train split)'
    assert step['data_sha256'] == shipped_templates().data_sha256
    assert step['template_pk'] in {n.pk for n in templates.values()}
    pyxtal = report['A_aP1_1_a:Li']
    assert not pyxtal['ok'] or 'template' not in pyxtal['realized_by'][pyxtal['output']]
    rocksalt = report['AB_cF8_225_a_b:Cs-I']
    assert [by['template'] for by in rocksalt['realized_by'].values()] == [
        t.material_id for t in shipped_templates().templates_for('AB_cF8_225_a_b:Cs-I', 2)], 'the two most similar'
    assert structure_label(outputs[rocksalt['output']].get_pymatgen_structure()) == 'AB_cF8_225_a_b:Cs-I'


def templates_first(label: str) -> str:
    return shipped_templates().templates_for(label, 1)[0].material_id


@pytest.mark.usefixtures('aiida_profile_clean')
def test_pyxtal_realization_lineage_names_its_seed() -> None:
    realize_calc = CalculationFactory('wyckoffdiff.realize')
    outputs, _ = run_get_node(realize_calc, batch_0=orm.List([SPINEL_LABEL]), seed=orm.Int(3), attempts=orm.Int(20))
    (step,) = lineage(outputs['structure_00000'])
    entry = outputs['report'].get_list()[0]
    assert step['realized'] == f'by PyXtal, seed {entry["realized_by"]["structure_00000"]["seed"]}'


def test_cli_realizes_from_a_template_or_by_pyxtal(tmp_path) -> None:
    runner = CliRunner()
    output = tmp_path / 'spinel.cif'
    result = runner.invoke(main, ['realize', NEW_SPINEL, '--output', str(output)])
    assert result.exit_code == 0, result.output
    assert f'from {templates_first(NEW_SPINEL)} (train split)' in result.output
    assert structure_label(Structure.from_file(output)) == NEW_SPINEL
    result = runner.invoke(main, ['realize', NEW_SPINEL, '--method', 'pyxtal', '--seed', '0', '--output', str(output)])
    assert result.exit_code == 0 and 'by PyXtal in' in result.output


def test_pyxtal_cells_shrink_to_the_predicted_volume_unless_atoms_would_overlap() -> None:
    """A random draw is rescaled to the fitted volume, but kept as drawn where shrinking would squeeze a close pair
    below the bond check (PyXtal's looser cell tolerated it), so the draw is not wasted."""
    spread = Structure(Lattice.cubic(6.0), ['Li', 'Li'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert _predicted_cell(spread).volume == pytest.approx(fitted_volume(['Li', 'Li']))
    close = Structure(Lattice.cubic(6.0), ['Li', 'Li'], [[0, 0, 0], [0.29, 0, 0]])  # 1.74 Å apart: 0.68 of 2.56 Å
    assert bond_problem(close) is None
    assert _predicted_cell(close).volume == pytest.approx(close.volume)


def test_templates_benchmark_quick_run(sample_dir, tmp_path) -> None:
    """The held-out realization benchmark's CI-size path on the committed sample rows."""
    output = tmp_path / 'templates.json'
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / 'benchmarks' / 'templates.py'), '--quick', '--data-dir',
         str(sample_dir), '--dataset', str(tmp_path / 'sample.jsonl.gz'), '--output', str(output)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(output.read_text())
    rows = {row['method']: row for row in document['rows']}
    assert {'template', 'pyxtal', 'pyxtal, fitted volume'} <= rows.keys()
    assert 0 < document['with_training_prototype'] <= document['test_crystals'] <= 20
    assert all(row['crystals'] == document['with_training_prototype'] for row in rows.values())
    assert rows['template']['matches_real'] >= rows['pyxtal']['matches_real']
    assert '| template |' in completed.stdout
