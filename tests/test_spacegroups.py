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
from aiida_wyckoffdiff.spacegroups import SpacegroupMethod, allocate_samples, chemistry_spacegroups, top_spacegroups
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


def _round_outcomes(system: str) -> dict[str, list[tuple[int, float]]]:
    """Per arm, (requested space group, relaxed e_above_hull) of two rounds of benchmarks/rounds.py (tests/data)."""
    import json
    from pathlib import Path

    from aiida_wyckoffdiff.symmetry import Protostructure

    arms = json.loads((Path(__file__).parent / 'data' / 'round_outcomes.json').read_text())['systems'][system]
    return {arm: [(Protostructure.from_label(label).spacegroup, energy) for label, energy in by_request.items()]
            for arm, by_request in arms.items()}


def test_an_allocation_shares_every_sample_and_keeps_one_per_group() -> None:
    """Counts add up, every group keeps a sample, a group never relaxed gets the overall rate, and other groups'
    relaxations are ignored."""
    outcomes = [(12, 0.02), (12, 0.05), (12, -0.3), (15, 0.6), (15, 0.4), (15, 0.05), (225, 0.0)]
    allocation = allocate_samples([12, 15, 62], outcomes, 40)
    assert sum(allocation.counts.values()) == 40 == len(allocation.spacegroups)
    assert allocation.counts[12] > allocation.counts[62] > allocation.counts[15] >= 1
    assert allocation.seen == {12: (3, 3), 15: (1, 3), 62: (0, 0)}, 'below the hull is near 0; group 225 is not scanned'
    assert allocation.rates[62] == pytest.approx((4 + 1) / (6 + 2))
    assert allocation.spacegroups[:allocation.counts[12]] == (12,) * allocation.counts[12]
    few = allocate_samples([12, 15, 62], outcomes, 2)
    assert sum(few.counts.values()) == 2 and few.counts[15] == 0, 'fewer samples than groups: no floor'
    higher = allocate_samples([12, 15, 62], outcomes, 40, target=0.5)
    assert higher.counts[15] > higher.counts[12], 'at 0.5 eV/atom the group that ended there leads'
    with pytest.raises(ValueError, match='nothing to allocate'):
        allocate_samples([], outcomes, 10)


@pytest.mark.parametrize('system', ['Ti-O', 'Cu-Nb-O'])
def test_round_one_allocation_puts_round_two_where_it_finds_the_hull(system) -> None:
    """Real rounds: shared by round 1's relaxations, round 2's samples land in groups whose round-2 relaxations
    (the fine-tuned model at target 0) end near the hull more often than under the even scan, and the allocation for
    0.3 eV/atom goes to groups whose round-2 relaxations end higher."""
    import numpy as np

    arms = _round_outcomes(system)
    groups = sorted({group for group, _ in arms['round_1']})
    later: dict[int, list[float]] = {group: [] for group in groups}
    for group, energy in arms['round_2_target_0.0']:
        later[group].append(energy)
    scanned = [group for group in groups if later[group]]

    def expected(target: float, measure) -> float:  # noqa: ANN001 - a reduction of one group's energies
        counts = allocate_samples(groups, arms['round_1'], 96, target).counts
        return float(np.average([measure(later[g]) for g in scanned], weights=[counts[g] for g in scanned]))

    def hit_rate(energies: list[float]) -> float:
        return float(np.mean(np.array(energies) <= 0.1))

    even = np.mean([hit_rate(later[g]) for g in scanned])
    assert expected(0.0, hit_rate) > 1.1 * even
    assert expected(0.3, np.median) > expected(0.0, np.median) + 0.03
