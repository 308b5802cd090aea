"""Elemental references for every element the model knows: MP's structure, or the library's standard state."""

from __future__ import annotations

import pytest

from aiida_wyckoffdiff import references
from aiida_wyckoffdiff.exceptions import ReferenceDataError
from aiida_wyckoffdiff.references import LIBRARY_SOURCE, elemental_reference, elemental_references

from .relax_fixtures import _one_torch_thread, chgnet  # noqa: F401

NOT_IN_MP_DATA = {'V', 'Cr', 'Zn', 'Mo', 'Lu', 'Os', 'Pt', 'Au', 'Ac', 'Th', 'Pa', 'U'}
"""Elements of the vocabulary whose MP energies the data holds, but no elemental structure."""
MOLECULAR = {'H', 'N', 'O', 'F', 'Cl', 'Br', 'I'}


def _vocabulary() -> tuple[str, ...]:
    from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, shipped_checkpoint_path

    return load_checkpoint(shipped_checkpoint_path()).model_config.elements


def test_every_element_of_the_vocabulary_has_a_reference() -> None:
    """Each of the 88 elements: a crystal of that element alone, from the MP data or, for twelve, from the library;
    the molecular elements from MP's molecular crystals (ASE tabulates them as molecules)."""
    vocabulary = _vocabulary()
    assert len(vocabulary) == 88
    by_element = {reference.element: reference for reference in elemental_references(vocabulary)}
    assert set(by_element) == set(vocabulary)
    for element, reference in by_element.items():
        assert [e.symbol for e in reference.structure.composition] == [element]
        assert reference.from_library or reference.source.startswith(('mp-', 'mvc-')), element
    assert {e for e, reference in by_element.items() if reference.from_library} == NOT_IN_MP_DATA
    assert all(by_element[element].source.startswith('mp-') for element in MOLECULAR)


def test_an_element_missing_from_mp_gets_the_library_standard_state() -> None:
    """V: ASE's bcc at Kittel's 3.02 Å; U: ASE gives only the lattice, pymatgen's AFLOW alpha-U prototype the atoms."""
    vanadium = elemental_reference('V')
    assert vanadium.source == LIBRARY_SOURCE and vanadium.formation_energy_per_atom == 0.0
    assert vanadium.structure.get_space_group_info()[1] == 229
    assert vanadium.structure.volume / len(vanadium.structure) == pytest.approx(3.02**3 / 2)
    uranium = elemental_reference('U')
    assert uranium.source == f'{references.AFLOW_SOURCE}:A_oC4_63_c' and uranium.from_library
    assert uranium.structure.get_space_group_info()[1] == 63
    assert uranium.structure.volume / len(uranium.structure) == pytest.approx(20.6, abs=0.1)


def test_an_element_with_no_crystal_reference_is_refused_with_the_reason(monkeypatch) -> None:
    """Without its MP molecular crystal, oxygen has no reference: ASE's O2 is a molecule, and no guess is made."""
    without_oxygen = {k: v for k, v in references._elemental_data().items() if k != 'O'}
    monkeypatch.setattr(references, '_elemental_data', lambda: without_oxygen)
    with pytest.raises(ReferenceDataError, match='O: no elemental structure .* ASE tabulates it as a diatom'):
        elemental_references(['O', 'V'])
    with pytest.raises(ReferenceDataError, match="Rn: no elemental structure in the shipped MP data, and none in ASE"):
        elemental_reference('Rn')


def test_v_o_and_zn_o_hulls_place_mp_compounds_against_library_metals(chgnet, tmp_path, monkeypatch) -> None:  # noqa: F811
    """CHGNet against its own bcc V and hcp Zn (library) and solid O2 (MP): rutile VO2 (mp-19094) and wurtzite ZnO
    (mp-2133), both on MP's hull, land within 0.1 eV/atom of MP's formation energy and of the hull, and are known."""
    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.hull import elemental_energies, hull_rows, reference_phase_diagram
    from aiida_wyckoffdiff.relax import relax_structures

    monkeypatch.setenv('WYCKOFFDIFF_CACHE_DIR', str(tmp_path))
    stable = {e.name for e in reference_phase_diagram(['O', 'V']).stable_entries}
    assert {'mp-19094', 'mp-21579', 'mp-25279'} <= stable  # VO2, V2O3, V2O5
    elemental = elemental_energies(chgnet, ['O', 'V', 'Zn'])
    assert elemental['V'] == pytest.approx(-9.08, abs=0.1)  # MP's bcc V: -9.08 eV/atom
    vo2 = Structure.from_spacegroup(136, Lattice.tetragonal(4.55, 2.85), ['V', 'O'], [[0, 0, 0], [0.3, 0.3, 0]])
    zno = Structure.from_spacegroup(186, Lattice.hexagonal(3.29, 5.3), ['Zn', 'O'], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])
    rows = hull_rows(relax_structures([vo2, zno], chgnet), elemental, apply_mp2020=not chgnet.includes_mp2020)
    for row, mp_formation in zip(rows, (-2.480, -1.791), strict=True):
        assert row.formation_energy_per_atom == pytest.approx(mp_formation, abs=0.1), row.formula
        assert abs(row.e_above_hull) < 0.1 and row.is_new is False, row.formula
