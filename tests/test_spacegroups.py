"""The space groups a scan samples: chosen for the chemistry, or the paper's fixed list, and recorded in the graph."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_wyckoffdiff.calculations.spacegroups import choose_spacegroups
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.data import training_spacegroups
from aiida_wyckoffdiff.launch import phase_diagram_builder
from aiida_wyckoffdiff.provenance import spacegroup_choice_of
from aiida_wyckoffdiff.spacegroups import SpacegroupMethod, chemistry_spacegroups, top_spacegroups
from aiida_wyckoffdiff.workchains.phase_diagram import PhaseDiagramWorkChain


def test_the_chemistry_choice_has_spinel_for_al_mg_o_and_the_double_perovskite_for_ba_in_o_ta() -> None:
    """Fd-3m (227) is the 21st most frequent group, so the fixed top 20 never asks for spinel MgAl2O4."""
    assert 227 not in top_spacegroups(20).spacegroups
    spinel = chemistry_spacegroups(['Al', 'Mg', 'O'], 20)
    assert spinel.spacegroups[0] == 227 and len(spinel.spacegroups) == 20
    assert spinel.nearest[227][0] == ('A2BC4_cF56_227_c_b_e:Al-Mg-O', 0.0)  # MgAl2O4 itself, a training crystal
    assert 225 in chemistry_spacegroups(['Ba', 'In', 'O', 'Ta'], 20).spacegroups


def test_the_choice_weighs_similar_chemistry_and_tends_to_the_arity_frequencies() -> None:
    near = chemistry_spacegroups(['Al', 'Mg', 'O'], 5, scale=2.0)
    far = chemistry_spacegroups(['Al', 'Mg', 'O'], 5, scale=1e9)
    assert near.spacegroups != far.spacegroups
    assert all(score == pytest.approx(round(score)) for score in far.scores.values())  # every crystal counts 1
    assert chemistry_spacegroups(['O', 'Mg', 'Al'], 5).spacegroups == near.spacegroups  # the order of elements


def test_the_top20_choice_is_the_papers_list() -> None:
    choice = top_spacegroups(20)
    assert list(choice.spacegroups) == training_spacegroups(20)
    assert choice.as_report()['method'] == 'top20' and 'whatever the chemistry' in choice.as_report()['reason']


@pytest.mark.usefixtures('aiida_profile_clean')
def test_the_calcfunction_records_the_groups_and_why() -> None:
    outputs, node = choose_spacegroups.run_get_node(orm.Str('Al-Mg-O'), orm.Int(20), orm.Str('chemistry'))
    assert node.is_finished_ok and outputs['spacegroups'].get_list()[0] == 227
    report = outputs['report'].get_dict()
    assert report['method'] == 'chemistry' and report['spacegroups'] == outputs['spacegroups'].get_list()
    assert report['nearest']['227'][0] == ['A2BC4_cF56_227_c_b_e:Al-Mg-O', 0.0] and 'Mendeleev' in report['reason']
    assert {link.link_label for link in node.base.links.get_incoming().all()} == {'chemsys', 'count', 'method'}
    top = choose_spacegroups(orm.Str('Al-Mg-O'), orm.Int(20), orm.Str('top20'))
    assert top['spacegroups'].get_list() == training_spacegroups(20)


def test_the_paper_protocol_keeps_the_top20_and_the_others_choose_for_the_chemistry() -> None:
    for name in PhaseDiagramWorkChain.get_available_protocols():
        inputs = PhaseDiagramWorkChain.get_protocol_inputs(name)
        expected = SpacegroupMethod.TOP20 if name == 'paper' else SpacegroupMethod.CHEMISTRY
        assert (inputs['spacegroup_choice'], inputs['spacegroup_count']) == (expected.value, 20), name


@pytest.mark.usefixtures('aiida_profile_clean')
def test_a_scan_records_its_choice_and_samples_exactly_those_groups(aiida_localhost, tmp_path) -> None:
    """Stopped at generation by a corrupt checkpoint: the choice ran first, and the generate jobs got its groups."""
    code = get_or_create_code(aiida_localhost)
    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'not a checkpoint')
    builder = phase_diagram_builder('Al-Mg-O', code=code.full_label, model_checkpoint=corrupt)
    _, node = run_get_node(builder)
    assert node.exit_status == PhaseDiagramWorkChain.exit_codes.ERROR_GENERATION_FAILED.status
    choice = spacegroup_choice_of(node)
    assert choice['method'] == 'chemistry' and choice['spacegroups'][0] == 227
    generated = [group for job in node.called if job.process_label == 'GenerateCalculation'
                 for group in job.inputs.spacegroups.get_list()]
    assert generated == choice['spacegroups']
    assert node.outputs.spacegroup_choice.creator.process_label == 'choose_spacegroups'


@pytest.mark.usefixtures('aiida_profile_clean')
def test_a_bad_choice_is_refused(aiida_localhost) -> None:
    code = get_or_create_code(aiida_localhost)
    with pytest.raises(ValueError, match='spacegroup_choice must be one of chemistry, top20'):
        PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', 'fast', {'spacegroup_choice': 'dice'})
