"""The baselines as sources of the workflow: random protostructures and ionic substitution, tagged in the table."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

from aiida_wyckoffdiff.baselines import WyckoffPrior, shipped_prior
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.launch import phase_diagram_builder
from aiida_wyckoffdiff.provenance import lineage
from aiida_wyckoffdiff.symmetry import Protostructure

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')


def test_shipped_prior_round_trips_and_covers_the_frequent_groups() -> None:
    from aiida_wyckoffdiff.data import training_spacegroups

    prior = shipped_prior()
    assert WyckoffPrior.from_dict(prior.as_dict()) == prior
    assert set(training_spacegroups(20)) <= set(prior.orbits)
    assert prior.letters[225]['a'] > prior.letters[225]['l']  # the fixed 4a holds an orbit far more often than 192l


def test_random_source_labels_obey_the_request() -> None:
    outputs, node = run_get_node(CalculationFactory('wyckoffdiff.random'), chemsys=orm.Str('Li-O'),
                                 spacegroups=orm.List([225, 12]), num_samples=orm.Int(3), seed=orm.Int(1))
    labels = node.outputs.result.get_list()
    protostructures = [Protostructure.from_label(label) for label in labels]
    assert len(labels) == 6 and [p.spacegroup for p in protostructures] == [225, 12] * 3
    assert all(set(p.elements) == {'Li', 'O'} and p.num_atoms <= 60 for p in protostructures)


def test_substitution_source_proposes_antifluorite_li2o(shared_data_dir) -> None:
    """Li-O by substitution: the 12 distinct proposals include Li2O in the antifluorite structure (MP's ground state,
    mp-1960), the least probable of them."""
    outputs, node = run_get_node(CalculationFactory('wyckoffdiff.substitution'), chemsys=orm.Str('Li-O'),
                                 num_structures=orm.Int(16))
    report = outputs['report'].get_list()
    assert 0 < len(report) <= 16 and len(outputs['data_sha256'].value) == 64
    assert 'A2B_cF12_225_c_a:Li-O' in {entry['label'] for entry in report}
    assert all(outputs[entry['output']].get_pymatgen_structure().composition.chemical_system == 'Li-O'
               for entry in report)


def test_phase_diagram_with_all_three_sources(aiida_localhost, shared_data_dir) -> None:
    """One space group, a model sample, a random one and two substituted structures: every row says which source
    proposed it, and each source's lineage ends at its own step."""
    code = get_or_create_code(aiida_localhost)
    builder = phase_diagram_builder('Li-O', code=code.full_label, spacegroups=[225], num_samples=1,
                                    relax_settings={'steps': 10, 'fmax': 0.1})
    builder.random_samples = 1
    builder.substitution_samples = 2
    builder.hull_tolerance = 10.0  # every relaxed structure a hull structure, so each source's lineage can be read
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    rows = {row['key']: row for row in node.outputs.table.get_list()}
    sources = {row['source'] for row in rows.values()}
    assert 'substitution' in sources and sources <= {'model', 'random', 'model,random', 'substitution'}
    assert any('random' in source for source in sources), rows
    ends = {}
    for key, structure in node.outputs.hull_structures.items():
        steps = lineage(structure)
        ends[rows[key]['source']] = steps[-1]
    assert ends['substitution']['process'] == 'wyckoffdiff.substitution'
    assert ends['substitution']['label'] is not None
    random_ends = [step for source, step in ends.items() if source == 'random']
    assert all(step['process'] == 'wyckoffdiff.random' and step['seed'] == 0 for step in random_ends)
