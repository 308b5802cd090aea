"""The Wyckoff table and the Protostructure type: conversions, canonical labels, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.prototypes import WYCKOFF_MULTIPLICITY_DICT, WYCKOFF_POSITION_PARAM_DICT
from pymatgen.core import Composition, Lattice, Structure

from aiida_wyckoffdiff.exceptions import ProtostructureError
from aiida_wyckoffdiff.symmetry import (
    Protostructure,
    equivalent_settings,
    spacegroup_info,
    structure_label,
    wyckoff_positions,
)

from .conftest import SPINEL_LABEL


def test_wyckoff_table_covers_all_groups() -> None:
    """PyXtal's table agrees with pymatgen's independent copy and has the known totals."""
    positions = {n: wyckoff_positions(n) for n in range(1, 231)}
    assert sum(len(p) for p in positions.values()) == 1731
    assert sum(wp.is_fixed for p in positions.values() for wp in p) == 616
    assert max(positions, key=lambda n: len(positions[n])) == 47
    assert [wp.letter for wp in positions[47]][-2:] == ['z', 'A']
    for number, group in positions.items():
        assert {wp.letter: wp.multiplicity for wp in group} == WYCKOFF_MULTIPLICITY_DICT[str(number)]
        assert {wp.letter: wp.dof for wp in group} == WYCKOFF_POSITION_PARAM_DICT[str(number)]


def test_spacegroup_info() -> None:
    assert spacegroup_info(227).symbol == 'Fd-3m'
    assert spacegroup_info(38).centering == 'C'  # Amm2: A-centred, written C in Pearson symbols
    assert spacegroup_info(166).crystal_system == 'trigonal'


def test_spinel_from_structure(spinel_cif) -> None:
    spinel = Protostructure.from_structure(Structure.from_file(spinel_cif))
    assert spinel.label == SPINEL_LABEL
    assert spinel.composition == Composition('Mg8Al16O32')
    assert spinel.num_atoms == 56
    assert spinel.free_parameters == 1  # the oxygen x on 32e
    assert spinel.dof == 2  # ... plus the cubic lattice parameter
    assert spinel.chemsys == 'Al-Mg-O'


def test_equivalent_origins_share_one_label() -> None:
    """Fd-3m's second origin swaps a<->b and c<->d: spinel written with Al on 16d, Mg on 8a is the same crystal."""
    shifted = Protostructure.from_occupation(227, {'Al': ['d'], 'Mg': ['a'], 'O': ['e']})
    reference = Protostructure.from_label(SPINEL_LABEL)
    assert shifted != reference
    assert shifted.label == reference.label
    assert shifted.canonical() == reference


def test_equivalent_settings_rewrite_real_crystals_without_changing_them(sample_structures) -> None:
    """Every alternative setting of every sample crystal keeps its label, its positions' sizes and freedoms."""
    rewritten = 0
    for material_id, structure in sample_structures.items():
        protostructure = Protostructure.from_label(structure_label(structure))
        matrix = protostructure.element_matrix()
        positions = wyckoff_positions(protostructure.spacegroup)
        orders = equivalent_settings(protostructure.spacegroup)
        assert np.array_equal(orders[0], np.arange(len(positions))), material_id
        assert len({tuple(order) for order in orders}) == len(orders), material_id
        for order in orders[1:]:
            assert [(positions[i].multiplicity, positions[i].dof) for i in order] == [
                (p.multiplicity, p.dof) for p in positions
            ], material_id
            other = Protostructure.from_element_matrix(protostructure.spacegroup, matrix[order], protostructure.elements)
            assert other.label == protostructure.label, material_id
            rewritten += other != protostructure
    assert rewritten > len(sample_structures)  # most crystals have settings with other letters
    assert len(equivalent_settings(47)) == 48 and len(equivalent_settings(1)) == 1  # Pmmm: 48; P1: one


def test_labels_round_trip_on_real_structures(sample_structures) -> None:
    for material_id, structure in sample_structures.items():
        label = structure_label(structure)
        protostructure = Protostructure.from_label(label)
        assert protostructure.label == label, material_id
        assert protostructure.composition.reduced_formula == structure.composition.reduced_formula, material_id


def test_element_matrix_round_trip() -> None:
    protostructure = Protostructure.from_label('A2B3_hR30_167_c_e:Al-O')  # corundum
    elements = ['O', 'Li', 'Al']
    matrix = protostructure.element_matrix(elements)
    assert matrix.shape == (len(wyckoff_positions(167)), 3)
    assert matrix.sum() == 2
    assert matrix[[wp.letter for wp in wyckoff_positions(167)].index('c'), 2] == 1
    assert Protostructure.from_element_matrix(167, matrix, elements) == protostructure


def test_several_orbits_on_a_free_position() -> None:
    protostructure = Protostructure.from_label('A2B_oP12_62_2c_c:Li-O')
    assert protostructure.sites == (('Li', 'c', 2), ('O', 'c', 1))
    assert protostructure.num_atoms == 12
    species, counts, sites = protostructure.pyxtal_sites()
    assert (species, counts, sites) == (['Li', 'O'], [8, 4], [['4c', '4c'], ['4c']])


@pytest.mark.parametrize(
    ('make', 'message'),
    [
        (lambda: Protostructure.from_occupation(225, {'Xx': ['a']}), "unknown element 'Xx'"),
        (lambda: Protostructure.from_occupation(231, {'Li': ['a']}), 'space group 231 does not exist'),
        (lambda: Protostructure.from_occupation(0, {'Li': ['a']}), 'space group 0 does not exist'),
        (lambda: Protostructure.from_occupation('abc', {'Li': ['a']}), "'abc' is not a number"),
        (lambda: Protostructure.from_occupation(2.5, {'Li': ['a']}), 'not a whole number'),
        (lambda: Protostructure.from_occupation(225, {'Li': ['z']}), "has no Wyckoff position 'z'"),
        (lambda: Protostructure.from_occupation(225, {'Li': ['a'], 'O': ['a']}), 'holds one orbit at most'),
        (lambda: Protostructure.from_occupation(225, {}), 'has no atoms'),
        (lambda: Protostructure.from_label('spinel'), 'malformed protostructure label'),
        (lambda: Protostructure.from_label('AB_cF8_225_a:Li-O'), '2 elements'),
        (lambda: Protostructure.from_label('AB_cF8_225_a_b:O-Li'), 'distinct and sorted'),
        (lambda: Protostructure.from_label('AB_cF8_225_a_?:Li-O'), 'malformed Wyckoff letters'),
        (lambda: Protostructure.from_label('AB_cF16_225_a_b:Li-O'), 'give AB_cF8'),
        (lambda: Protostructure.from_label('AB_cF8_231_a_b:Li-O'), 'space group 231'),
    ],
)
def test_bad_input_names_the_problem(make, message) -> None:
    with pytest.raises(ProtostructureError, match=message):
        make()


def test_structure_label_rejects_empty_and_disordered() -> None:
    lattice = Lattice.cubic(4.0)
    with pytest.raises(ProtostructureError, match='no atoms'):
        structure_label(Structure(lattice, [], []))
    with pytest.raises(ProtostructureError, match='disordered'):
        structure_label(Structure(lattice, [{'Li': 0.5, 'Na': 0.5}], [[0, 0, 0]]))


def test_matrix_shape_is_checked() -> None:
    with pytest.raises(ProtostructureError, match='does not fit space group 225'):
        Protostructure.from_element_matrix(225, np.zeros((3, 2), dtype=int), ['Li', 'O'])


def test_labels_do_not_read_the_aflow_library_until_it_is_used() -> None:
    """Writing a label imports pymatgen's prototype module without its AFLOW library (seconds of every command's
    start); the library is still all there for whoever iterates it. In a fresh interpreter, since this one may have
    imported the module already."""
    import subprocess
    import sys

    script = (
        'from aiida_wyckoffdiff.symmetry import Protostructure, pymatgen_prototypes\n'
        'label = Protostructure.from_label("A2BC4_cF56_227_c_b_e:Al-Mg-O").canonical().label\n'
        'library = pymatgen_prototypes().AFLOW_PROTOTYPE_LIBRARY\n'
        'print(label, library._load is not None, len(library) > 200, library[0]["snl"].structure.is_ordered)\n'
    )
    printed = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True).stdout.split()
    assert printed == ['A2BC4_cF56_227_c_b_e:Al-Mg-O', 'True', 'True', 'True']
