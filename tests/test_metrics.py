"""The sample-quality metrics on inputs whose answers are known by hand."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition, Lattice, Structure

from aiida_wyckoffdiff.metrics import (
    charge_balanced,
    novelty,
    p1_share,
    scan_metrics,
    spacegroup_distance,
    structurally_valid,
    sun_keys,
    symmetry_preservation,
    uniqueness,
)

LI2O = 'A2B_cF12_225_c_a:Li-O'
LI2O_HEX = 'A2B_hP6_194_f_c:Li-O'  # label-shaped, not a known phase here
SPINEL = 'A2BC4_cF56_227_c_b_e:Al-Mg-O'


@pytest.mark.parametrize(('formula', 'balanced'), [
    ('Li2O', True), ('MgAl2O4', True), ('TiO2', True), ('Ti2O3', True), ('Ba2InTaO6', True),
    ('LiO8', False), ('TiO5', False), ('Li', True), ('LiAl', True),
    ('Li26O25', False), ('Li52O26', True),  # reduced formulas of 51 atoms (generated) and 3 atoms
])
def test_charge_balance(formula: str, balanced: bool) -> None:
    assert charge_balanced(Composition(formula)) is balanced


def test_structural_validity(sample_structures) -> None:
    assert structurally_valid(sample_structures['mp-3536'])  # the MP spinel
    overlapping = Structure(Lattice.cubic(4.0), ['Li', 'O'], [[0, 0, 0], [0.05, 0, 0]])  # 0.2 Å apart
    assert not structurally_valid(overlapping)
    assert structurally_valid(overlapping, min_distance=0.1)


def test_uniqueness_novelty_and_p1() -> None:
    labels = ['a', 'a', 'b', 'c']
    assert uniqueness(labels) == 0.75
    assert novelty(labels, known={'a'}) == pytest.approx(2 / 3)
    assert novelty(labels, known={'a', 'b', 'c'}) == 0.0
    assert p1_share([1, 1, 225, None]) == 0.5
    assert uniqueness([]) == novelty([], set()) == p1_share([]) == 0.0


def test_spacegroup_distance_bounds() -> None:
    assert spacegroup_distance([225, 194], {225: 10, 194: 10}) == pytest.approx(0.0)
    assert spacegroup_distance([1, 1], {225: 3}) == pytest.approx(1.0)
    halfway = spacegroup_distance([225], {225: 1, 194: 1})
    assert 0.0 < halfway < 1.0
    assert halfway == pytest.approx(spacegroup_distance([225, 194], [225]))  # symmetric
    with pytest.raises(ValueError, match='at least one'):
        spacegroup_distance([], {225: 1})


def test_symmetry_preservation_counts_groups_and_crystal_systems() -> None:
    kept = symmetry_preservation([(225, 225), (225, 221), (225, 2), (194, None), (194, 186)])
    assert (kept.relaxed, kept.spacegroup_kept, kept.crystal_system_kept) == (5, 1, 3)  # 221 cubic, 186 hexagonal
    assert kept.spacegroup_share == pytest.approx(0.2)
    assert kept.crystal_system_share == pytest.approx(0.6)


def test_sun_needs_stable_unique_and_novel() -> None:
    rows = [
        {'key': 's0', 'e_above_hull': 0.02},   # stable, novel: counts
        {'key': 's1', 'e_above_hull': 0.05},   # same relaxed label as s0: not unique
        {'key': 's2', 'e_above_hull': 0.50},   # unstable
        {'key': 's3', 'e_above_hull': 0.00},   # known phase: not novel
        {'key': 's4', 'e_above_hull': None},   # failed relaxation
        {'key': 's5', 'e_above_hull': -0.01},  # below the hull, unlabelled: not counted
    ]
    labels = {'s0': 'x', 's1': 'x', 's2': 'y', 's3': LI2O, 's4': None, 's5': None}
    assert sun_keys(rows, labels, known={LI2O}) == ['s0']
    assert sun_keys(rows, labels, known={LI2O}, stability=1.0) == ['s0', 's2']


def test_scan_metrics_on_a_small_scan(sample_structures) -> None:
    samples = [LI2O, LI2O, LI2O_HEX, SPINEL]
    antifluorite = Structure.from_spacegroup(225, Lattice.cubic(4.63), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    # A random protostructure of the same scan was realized too; it is not one of the model's samples.
    realized = {LI2O: antifluorite, SPINEL: sample_structures['mp-3536'], 'AB_cF8_225_a_b:Li-O': antifluorite}
    rows = [
        {'key': 'structure_00000', 'e_above_hull': 0.0, 'spacegroup_requested': 225, 'spacegroup_found': 225},
        {'key': 'structure_00002', 'e_above_hull': 0.3, 'spacegroup_requested': 227, 'spacegroup_found': 74},
    ]
    relaxed_labels = {'structure_00000': LI2O, 'structure_00002': 'A2BC4_oI28_74_e_e_hi:Al-Mg-O'}
    metrics = scan_metrics(samples, realized, rows, relaxed_labels, training_labels={LI2O},
                           training_spacegroups={225: 2, 194: 1, 227: 1})
    assert (metrics.samples, metrics.distinct, metrics.realized, metrics.relaxed) == (4, 3, 2, 2)
    assert metrics.uniqueness == 0.75
    assert metrics.novelty == pytest.approx(2 / 3)
    assert metrics.valid_structure == pytest.approx(2 / 3)  # the hexagonal one was never realized
    assert metrics.valid_composition == pytest.approx(1.0)
    assert metrics.p1_share == 0.0
    assert metrics.spacegroup_distance == pytest.approx(0.0)  # same proportions as the training counts
    assert (metrics.stable, metrics.sun, metrics.sun_rate) == (1, 0, 0.0)  # the stable one is the known Li2O
    assert metrics.spacegroup_kept == 0.5
    assert metrics.crystal_system_kept == 0.5  # cubic 227 -> orthorhombic 74 lost it


@pytest.mark.usefixtures('aiida_profile')
def test_metrics_command_names_what_it_cannot_score() -> None:
    from aiida import orm
    from click.testing import CliRunner

    from aiida_wyckoffdiff.cli import main

    stored = orm.Int(1).store()
    result = CliRunner().invoke(main, ['metrics', str(stored.pk)])
    assert result.exit_code == 1
    assert 'not a wyckoffdiff.phase_diagram run' in result.output
    result = CliRunner().invoke(main, ['metrics', '987654321'])
    assert result.exit_code == 1
    assert 'no single node' in result.output


def test_by_source_counts_each_sources_relaxed_near_hull_and_known_phases() -> None:
    from aiida_wyckoffdiff.reporting import by_source

    def row(key: str, source: str | None, e: float | None, duplicate_of: str | None = None) -> dict:
        return {'key': key, 'source': source, 'e_above_hull': e, 'duplicate_of': duplicate_of}

    rows = [
        row('s1', 'model', 0.05), row('s2', 'model', 0.40), row('s3', 'model', None),  # not relaxed
        row('s4', 'random', 0.02), row('s5', 'random', 0.03, duplicate_of='s4'),  # one structure twice
        row('s6', 'model,random', 0.09), row('sub1', 'substitution', 0.035), row('reference_Li', None, 0.0),
    ]
    labels = {'s1': 'AB_hP8_194_ac_f:Li-O', 'sub1': 'A2B_cF12_225_c_a:Li-O', 's6': 'A2B_cF12_225_c_a:Li-O'}
    summary = by_source(rows, labels, 0.1, {'A2B_cF12_225_c_a:Li-O': 'mp-1960'})
    assert list(summary) == ['model', 'model,random', 'random', 'substitution']
    assert summary['model'] == {'relaxed': 2, 'near_hull': 1, 'known_phases': []}
    assert summary['random'] == {'relaxed': 2, 'near_hull': 1, 'known_phases': []}
    assert summary['model,random']['known_phases'] == summary['substitution']['known_phases'] == ['mp-1960']


@pytest.mark.parametrize(('elements', 'ionic'), [
    (('Li', 'O'), True), (('Ga', 'N'), True), (('Br', 'O', 'Pb', 'Te'), True), (('Cs', 'I'), True),
    (('Dy', 'In'), False), (('C', 'Ce'), False), (('Si', 'Ta'), False), (('Al', 'Mg'), False),
])
def test_ionic_systems_have_an_anion_former(elements, ionic) -> None:
    from aiida_wyckoffdiff.metrics import ionic_system

    assert ionic_system(elements) is ionic
