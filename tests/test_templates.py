"""Realization from real crystals: the shipped template library, substitution, the bond check, provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.data import MAIN_FILE, split_of
from aiida_wyckoffdiff.exceptions import ProtostructureError
from aiida_wyckoffdiff.files import file_sha256
from aiida_wyckoffdiff.lattices import MIN_GROUP_SHAPES, draw_lattice, lattice_shape, shipped_lattice_shapes
from aiida_wyckoffdiff.provenance import lineage
from aiida_wyckoffdiff import realize as realize_module
from aiida_wyckoffdiff.realize import REAL_SHAPE_FAILED, _predicted_cell, realize
from aiida_wyckoffdiff.symmetry import Protostructure, structure_label
from aiida_wyckoffdiff.templates import (
    arrangement_of,
    bond_problem,
    fitted_volume,
    prototype_of,
    shipped_templates,
    substitute,
)

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
    assert all(arrangement_of(t.label) == arrangement_of(SPINEL_LABEL) for t in templates)
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
    assert reason.startswith(f'template {rocksalt.material_id}: ') and 'does not have the arrangement of' in reason


def test_a_template_is_found_up_to_the_order_of_the_elements_and_the_setting() -> None:
    """No training crystal has the prototype ``A5B3_tI16_139_af_bc`` (oxygen first by the alphabet), but Li3Mg5 has
    its arrangement, ``A3B5_tI16_139_ac_bf`` in another origin (a and b swap): titanium takes lithium's orbits, oxygen
    magnesium's, and the substituted crystal carries the requested label."""
    label = 'A5B3_tI16_139_af_bc:O-Ti'
    library = shipped_templates()
    assert prototype_of(label) not in library.by_prototype
    template = library.templates_for(label, 1)[0]
    assert prototype_of(template.label) != prototype_of(label)
    assert arrangement_of(template.label) == arrangement_of(label)
    protostructure = Protostructure.from_label(label)
    assert template.mapping_to(protostructure) == dict(zip(template.elements, ['Ti', 'O'], strict=True))
    assert structure_label(substitute(protostructure, template)) == label
    with pytest.raises(ProtostructureError, match='does not have the arrangement'):
        library.templates_for('AB_cF8_225_a_b:F-Li', 1)[0].mapping_to(protostructure)


@pytest.mark.parametrize(('chemsys', 'spacegroup'), [(('O', 'Ti'), 139), (('Al', 'Mg', 'O'), 194)])
def test_every_known_arrangement_the_sampler_offers_has_a_template(chemsys, spacegroup) -> None:
    """The sampler's known arrangements come from training crystals, so each must find one, including those whose
    prototype string no training crystal has (the request's alphabet orders the elements the other way)."""
    library = shipped_templates()
    arrangements = library.arrangements(chemsys, spacegroup, max_atoms=20)
    assert any(prototype_of(a.label) not in library.by_prototype for a in arrangements)
    assert all(library.templates_for(a, 1) for a in arrangements)


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
    assert not pyxtal['ok'] or [list(by) for by in pyxtal['realized_by'].values()] == [['seed'], ['seed']]
    rocksalt = report['AB_cF8_225_a_b:Cs-I']  # a label with templates is realized once, from the most similar
    assert list(rocksalt['realized_by'].values()) == [{'template': templates_first('AB_cF8_225_a_b:Cs-I')}]
    assert rocksalt['alternatives'] == [] and f"{rocksalt['output']}_c1" not in outputs
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
    assert {'template', 'pyxtal', 'pyxtal, fitted volume', 'pyxtal, real lattice shapes'} <= rows.keys()
    assert document['pyxtal_costs']['pyxtal, real lattice shapes']['mean_seconds'] > 0
    assert 0 < document['with_training_prototype'] <= document['test_crystals'] <= 20
    assert all(row['crystals'] == document['with_training_prototype'] for row in rows.values())
    assert rows['template']['matches_real'] >= rows['pyxtal']['matches_real']
    assert '| template |' in completed.stdout


# Pnma A2B3 (the Li2O3 prototype of mp-8956): orthorhombic, so its shape is (b/a, c/a).
ORTHORHOMBIC_LABEL = 'A2B3_oP20_62_2c_3c:Li-O'


def test_lattice_shapes_are_the_training_crystals() -> None:
    """The shipped shapes are those :func:`lattice_shape` gives the shipped templates (a seeded sample checked),
    of the same data, and cover nearly every template."""
    library, shapes = shipped_templates(), shipped_lattice_shapes()
    assert shapes.data_sha256 == library.data_sha256
    assert 0.99 * len(library) <= sum(map(len, shapes.by_spacegroup.values())) <= len(library)
    templates = [t for prototype in sorted(library.by_prototype) for t in library.by_prototype[prototype]]
    for index in np.random.default_rng(0).choice(len(templates), 30, replace=False):
        found = lattice_shape(templates[index])
        assert found is None or found[1] in shapes.by_spacegroup[found[0]], templates[index].material_id


def test_cubic_groups_have_cubic_shapes_and_sparse_groups_their_systems() -> None:
    shapes = shipped_lattice_shapes()
    assert len(shapes.shapes_for(225)) > 1000 and set(shapes.shapes_for(225)) == {()}
    lattice = draw_lattice(225, 180.0, np.random.default_rng(0))
    assert np.allclose(lattice.get_para(degree=True), [180 ** (1 / 3)] * 3 + [90] * 3)
    sparse = next(g for g, own in sorted(shapes.by_spacegroup.items()) if len(own) < MIN_GROUP_SHAPES and 16 <= g <= 74)
    orthorhombic = shapes.shapes_for(sparse)
    assert len(orthorhombic) > 1000 and all(len(shape) == 2 for shape in orthorhombic), 'all orthorhombic groups'
    assert shapes.shapes_for(62) == shapes.by_spacegroup[62]


def test_drawn_lattice_is_a_real_shape_at_the_volume() -> None:
    own = np.array(shipped_lattice_shapes().shapes_for(12))  # C2/m: b/a, c/a, beta
    for seed in range(5):
        a, b, c, alpha, beta, gamma = draw_lattice(12, 300.0, np.random.default_rng(seed)).get_para(degree=True)
        assert np.isclose(own, [b / a, c / a, beta], atol=1e-3).all(axis=1).any()
        assert alpha == pytest.approx(90) and gamma == pytest.approx(90)
        assert a * b * c * np.sin(np.radians(beta)) == pytest.approx(300.0)


def test_pyxtal_realization_takes_a_real_shape_and_keeps_the_label() -> None:
    """With the predicted cell, PyXtal's draw has the shape of a training crystal of the group and the fitted volume,
    and still carries the requested label; seeded."""
    result = realize(ORTHORHOMBIC_LABEL, seed=1, scale_volume=True, real_shapes=True)
    assert result.ok and REAL_SHAPE_FAILED not in result.rejections
    assert structure_label(result.structure) == ORTHORHOMBIC_LABEL
    a, b, c = result.structure.lattice.abc
    assert np.isclose(shipped_lattice_shapes().shapes_for(62), [b / a, c / a], atol=1e-3).all(axis=1).any()
    assert result.structure.volume == pytest.approx(fitted_volume(s.specie.symbol for s in result.structure))
    again = realize(ORTHORHOMBIC_LABEL, seed=1, scale_volume=True, real_shapes=True)
    assert np.allclose(again.structure.lattice.matrix, result.structure.lattice.matrix)


def test_a_shape_pyxtal_cannot_fill_falls_back_to_its_own_lattice_counted(monkeypatch) -> None:
    """Atoms that do not fit the real shape's cell (here one far too small) are placed in PyXtal's own lattice, and
    the failure is counted among the rejections, once."""
    monkeypatch.setattr(realize_module, '_real_lattice', lambda p, rng: draw_lattice(p.spacegroup, 8.0, rng))
    result = realize(SPINEL_LABEL, seed=1, scale_volume=True, real_shapes=True, attempts=2)
    assert result.ok and structure_label(result.structure) == SPINEL_LABEL
    assert result.rejections[REAL_SHAPE_FAILED] == 1
    never = realize(SPINEL_LABEL, seed=1, scale_volume=True, real_shapes=True, attempts=3, min_distance=50.0)  # every draw rejected
    assert never.attempts == 3 and never.rejections[REAL_SHAPE_FAILED] == 1, 'later attempts in PyXtal\'s own lattice'


def test_arrangements_put_the_elements_on_each_training_prototype_of_the_group() -> None:
    """Li-O in Fm-3m within 12 atoms: rocksalt, fluorite and antifluorite, each a training prototype, none larger."""
    from aiida_wyckoffdiff.templates import prototype_of, shipped_templates

    library = shipped_templates()
    arrangements = library.arrangements(('O', 'Li'), 225, max_atoms=12)
    labels = {a.label for a in arrangements}
    assert {'AB_cF8_225_a_b:Li-O', 'A2B_cF12_225_c_a:Li-O', 'AB2_cF12_225_a_c:Li-O'} <= labels
    assert all(prototype_of(a.label) in library.by_prototype and a.num_atoms <= 12 for a in arrangements)
    assert len(library.arrangements(('Li', 'O'), 225, max_atoms=60)) > len(arrangements)
    assert library.arrangements(('Li', 'O', 'Xe', 'Kr', 'Ne'), 225, max_atoms=60) == []


def test_arrangements_put_each_element_where_a_template_has_one_as_electronegative() -> None:
    """Rutile VO2 is ``A2B_tP6_136_f_a:O-V`` (oxygen first by the alphabet): Li-O on it gets lithium on vanadium's
    orbits, as LiO2, the rutile arrangement (``arrangement_of``) under another label. Al-Mg-O in Fd-3m gets the
    spinel MgAl2O4, and oxygen, the most electronegative, is the majority element of every Al-Mg-O arrangement there,
    as in the training oxides (label order would give Al2Mg4O from the spinel Ni2SiO4, ``A2B4C_cF56_227_c_e_b``)."""
    from aiida_wyckoffdiff.templates import arrangement_of, shipped_templates

    library = shipped_templates()
    assert any(t.elements == ['O', 'V'] for t in library.by_prototype['A2B_tP6_136_f_a'])
    assert 'AB2_tP6_136_a_f:Li-O' in {a.label for a in library.arrangements(('Li', 'O'), 136, max_atoms=6)}
    assert arrangement_of('A2B_tP6_136_f_a:O-V') == arrangement_of('AB2_tP6_136_a_f:Li-O') == 'tP6_136_a_f'
    assert arrangement_of('A2B_tP6_136_f_a:O-V') != arrangement_of('AB_tP8_136_f_g:Li-O')
    spinels = library.arrangements(('Al', 'Mg', 'O'), 227, max_atoms=60)
    assert 'A2BC4_cF56_227_c_b_e:Al-Mg-O' in {a.label for a in spinels}
    assert all(a.composition['O'] == max(a.composition.values()) for a in spinels)
