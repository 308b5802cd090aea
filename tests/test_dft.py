"""The DFT follow-up with a real pw.x: a small Li-O hull relaxed by Quantum ESPRESSO, and its bad inputs.

pw.x and the pseudopotentials come from Debian (scripts/install-qe.sh, run by `make test`). Without them the
pw.x tests skip, saying so, except under CI (the CI variable set), where they fail: CI must never skip them.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from pymatgen.core import Composition, Lattice, Structure

from aiida_wyckoffdiff.dft import (
    DEBIAN_PSEUDO_DIR,
    QUICK_OVERRIDES,
    debian_pseudopotentials,
    dft_hull_builder,
    get_or_create_pseudo_family,
    molecule_in_box,
)
from aiida_wyckoffdiff.provenance import lineage, structures_of

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

FAMILY = 'test/pbesol'
CUTOFFS = (25.0, 200.0)
"""Ry: far below converged for these pseudopotentials, enough for a real, fast calculation."""
OPTIONS = {
    'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
    'withmpi': False,
    'max_wallclock_seconds': 900,
    'environment_variables': {'OMP_NUM_THREADS': '1'},
}


def li2o() -> Structure:
    """Antifluorite Li2O, 3-atom primitive cell, lattice constant 2 % off so that the cell relaxation has work."""
    return Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(4.70), ['O', 'Li'], [[0, 0, 0], [0.25, 0.25, 0.25]]
    ).get_primitive_structure()


def lio_rocksalt() -> Structure:
    """A made-up LiO in the rocksalt structure: 2 atoms, above the hull of Li2O and O2."""
    return Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(4.30), ['Li', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def references() -> dict[str, orm.StructureData]:
    """Cheap elemental references: bcc Li (1 atom) and an O2 molecule in a 5 Å box."""
    lithium = Structure.from_spacegroup('Im-3m', Lattice.cubic(3.44), ['Li'], [[0, 0, 0]]).get_primitive_structure()
    return {'Li': orm.StructureData(pymatgen=lithium), 'O': molecule_in_box('O2', 5.0)}


@pytest.fixture(scope='module')
def pw_available() -> None:
    """Skip (fail under CI) unless pw.x and the Debian pseudopotentials are installed."""
    if shutil.which('pw.x') and DEBIAN_PSEUDO_DIR.is_dir():
        return
    message = f'pw.x or {DEBIAN_PSEUDO_DIR} missing: scripts/install-qe.sh installs them (as root, Debian)'
    if os.environ.get('CI'):
        pytest.fail(f'{message}; CI must run the DFT tests')
    pytest.skip(message)


@pytest.fixture
def pw_code(pw_available, aiida_localhost) -> orm.InstalledCode:
    from aiida_wyckoffdiff.codes import get_or_create_pw_code

    return get_or_create_pw_code(aiida_localhost)


@pytest.fixture
def family(pw_available):  # -> CutoffsPseudoPotentialFamily
    return get_or_create_pseudo_family(FAMILY, debian_pseudopotentials(['Li', 'O']), *CUTOFFS)


def group_of(*structures: Structure) -> orm.Group:
    group = orm.Group(label='test/li-o-hull').store()
    group.add_nodes([orm.StructureData(pymatgen=structure).store() for structure in structures])
    return group


@pytest.mark.pw
def test_li_o_hull_with_pw(pw_code, family) -> None:
    group = group_of(li2o(), lio_rocksalt())
    builder = dft_hull_builder(
        group.label,
        pseudo_family=FAMILY,
        code=pw_code.full_label,
        protocol='fast',
        overrides=QUICK_OVERRIDES,
        options=OPTIONS,
        references=references(),
        reference_relax_types={'O': 'positions'},
        initial_relaxation=False,
    )
    assert 'potential_e_above_hull' not in builder  # plain structures: no potential's value to compare with
    li2o_key = next(key for key, structure in builder.structures.items() if structure.get_formula() == 'Li2O')
    builder.potential_e_above_hull = {li2o_key: 0.05}  # as a phase-diagram run would give it
    _, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    rows = {row['formula']: row for row in node.outputs.table.get_list()}
    assert set(rows) == {'Li2O', 'Li2O2'}  # pymatgen writes LiO as the peroxide
    elemental = node.outputs.elemental_energies.get_dict()
    assert set(elemental) == {'Li', 'O'}
    # Energies from pw.x itself: Li and O pseudopotential atoms are bound by a few hundred eV each.
    assert -300 < elemental['Li'] < -150 and -600 < elemental['O'] < -400, elemental
    li2o_row, lio_row = rows['Li2O'], rows['Li2O2']
    for row in (li2o_row, lio_row):
        assert row['converged'] and row['exit_status'] == 0 and row['reason'] is None, row
        assert row['final_max_force'] is not None and row['final_max_force'] < 0.05, row  # forc_conv_thr 1e-2 Ry/bohr
    # Li2O is strongly bound and on the DFT hull; rocksalt LiO lies above the Li2O-O2 tie line.
    assert -3.0 < li2o_row['dft_formation_energy_per_atom'] < -1.0, li2o_row
    assert li2o_row['dft_e_above_hull'] == pytest.approx(0.0, abs=1e-9)
    assert lio_row['dft_e_above_hull'] > 0.0, lio_row
    assert li2o_row['difference'] == pytest.approx(li2o_row['dft_e_above_hull'] - 0.05)
    assert lio_row['potential_e_above_hull'] is None and lio_row['difference'] is None
    # The hull is pymatgen's, from the reported energies.
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    entries = [PDEntry(element, energy) for element, energy in elemental.items()]
    entries += [
        PDEntry(formula, row['dft_energy_per_atom'] * Composition(formula).num_atoms) for formula, row in rows.items()
    ]
    diagram = PhaseDiagram(entries)
    assert diagram.get_e_above_hull(entries[-1]) == pytest.approx(lio_row['dft_e_above_hull'], abs=1e-6)
    # The cell was relaxed: the DFT structure is not the input one, and it traces back to it.
    relaxed = node.outputs.relaxed
    assert set(relaxed) == {*(f'node_{n.pk}' for n in group.nodes), 'reference_Li', 'reference_O'}
    inputs = dict(node.inputs.structures.items())
    assert (
        relaxed[li2o_key].get_cell_volume() < 0.99 * inputs[li2o_key].get_cell_volume()
    )  # the input was 2 % too large
    oxygen = relaxed['reference_O'].get_ase()
    assert oxygen.get_volume() == pytest.approx(125.0)  # relaxed with a fixed box
    bond = oxygen.get_distance(0, 1, mic=True)
    assert 1.1 < bond < 1.35 and abs(bond - node.inputs.references['O'].get_ase().get_distance(0, 1)) > 1e-3, bond
    relax = orm.load_node(li2o_row['relax_pk'])
    assert relax.process_label == 'PwRelaxWorkChain' and relax.inputs.structure.uuid == inputs[li2o_key].uuid
    called = [link.link_label for link in relax.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all()]
    assert called == ['iteration_01']  # initial_relaxation=False: no init_relax
    assert [step['process'] for step in lineage(relaxed[li2o_key])] == ['quantumespresso.pw']  # back to the input


def li_bcc_and_fcc() -> tuple[Structure, Structure]:
    bcc = Structure.from_spacegroup('Im-3m', Lattice.cubic(3.44), ['Li'], [[0, 0, 0]]).get_primitive_structure()
    fcc = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.33), ['Li'], [[0, 0, 0]]).get_primitive_structure()
    return bcc, fcc


def test_missing_family_is_exit_201(pw_code) -> None:
    builder = dft_hull_builder(group_of(li2o()).label, pseudo_family='absent/family', code=pw_code.full_label)
    _, node = run_get_node(builder)
    assert node.exit_status == 201
    assert 'absent/family' in node.exit_message and 'wyckoffdiff dft-setup' in node.exit_message
    assert not node.called  # nothing ran


def test_family_without_any_needed_element_is_exit_202(pw_code) -> None:
    get_or_create_pseudo_family('test/li-only', debian_pseudopotentials(['Li']), *CUTOFFS)
    builder = dft_hull_builder(
        group_of(li2o(), lio_rocksalt()).label, pseudo_family='test/li-only', code=pw_code.full_label
    )
    _, node = run_get_node(builder)
    assert node.exit_status == 202
    assert 'test/li-only' in node.exit_message and 'for O' in node.exit_message
    assert not node.called
    assert structures_of(node) == {}  # a run that relaxed nothing hands nothing on


@pytest.mark.pw
def test_structures_the_family_cannot_describe_are_skipped_and_the_others_go_on(pw_code) -> None:
    get_or_create_pseudo_family('test/li-only', debian_pseudopotentials(['Li']), *CUTOFFS)
    bcc, fcc = li_bcc_and_fcc()
    builder = dft_hull_builder(
        group_of(li2o(), fcc).label,
        pseudo_family='test/li-only',
        code=pw_code.full_label,
        protocol='fast',
        overrides=QUICK_OVERRIDES,
        options=OPTIONS,
        references={'Li': orm.StructureData(pymatgen=bcc)},
        initial_relaxation=False,
    )
    _, node = run_get_node(builder)
    assert node.exit_status == 710, node.exit_message
    rows = {row['formula']: row for row in node.outputs.table.get_list()}
    assert 'Li2O' in node.exit_message
    assert rows['Li2O']['reason'] == 'pseudopotential family test/li-only has no O' and rows['Li2O']['relax_pk'] is None
    # fcc and bcc Li differ by meV: a real, small number from pw.x against the bcc reference.
    assert rows['Li']['converged'] and rows['Li']['dft_e_above_hull'] >= 0.0
    assert abs(rows['Li']['dft_formation_energy_per_atom']) < 0.05, rows['Li']
    assert set(node.outputs.relaxed) == {
        f'node_{orm.load_node(rows["Li"]["relax_pk"]).inputs.structure.pk}',
        'reference_Li',
    }


@pytest.mark.pw
def test_pw_that_does_not_converge_is_exit_410_with_its_reason(pw_code) -> None:
    get_or_create_pseudo_family('test/li-only', debian_pseudopotentials(['Li']), *CUTOFFS)
    bcc, fcc = li_bcc_and_fcc()
    unconverged = {
        'base_relax': {'max_iterations': 1, 'pw': {'parameters': {'ELECTRONS': {'electron_maxstep': 1}}}},
        'base_init_relax': {'max_iterations': 1, 'pw': {'parameters': {'ELECTRONS': {'electron_maxstep': 1}}}},
    }
    builder = dft_hull_builder(
        group_of(fcc).label,
        pseudo_family='test/li-only',
        code=pw_code.full_label,
        protocol='fast',
        overrides=unconverged,
        options=OPTIONS,
        references={'Li': orm.StructureData(pymatgen=bcc)},
    )
    _, node = run_get_node(builder)
    assert node.exit_status == 410, node.exit_message
    (row,) = node.outputs.table.get_list()
    assert not row['converged'] and row['dft_e_above_hull'] is None
    relax = orm.load_node(row['relax_pk'])
    assert relax.is_failed and row['exit_status'] == relax.exit_status
    assert f'PwRelaxWorkChain<{relax.pk}> failed' in row['reason'] and row['key'] in node.exit_message


def test_dft_setup_is_idempotent_and_updates_cutoffs(pw_available) -> None:
    from click.testing import CliRunner

    from aiida_wyckoffdiff.cli import main

    runner = CliRunner()
    first = runner.invoke(main, ['dft-setup', '--family', 'test/setup', '--elements', 'Li,O'])
    assert first.exit_code == 0, first.output
    code = orm.load_code('pw@localhost')
    assert code.default_calc_job_plugin == 'quantumespresso.pw' and str(code.filepath_executable) == shutil.which(
        'pw.x'
    )
    second = runner.invoke(main, ['dft-setup', '--family', 'test/setup', '--ecutwfc', '30', '--ecutrho', '240'])
    assert second.exit_code == 0, second.output
    assert orm.load_code('pw@localhost').pk == code.pk
    family = orm.load_group('test/setup')
    assert sorted(family.elements) == ['Li', 'O']
    assert family.get_recommended_cutoffs(elements=('Li', 'O'), unit='Ry') == (30.0, 240.0)
    missing = runner.invoke(main, ['dft-setup', '--family', 'test/setup2', '--elements', 'Li,Xe'])
    assert missing.exit_code == 1 and 'no pbesol pseudopotential for Xe' in missing.output


def test_without_the_extra_it_says_what_to_install(monkeypatch, aiida_localhost) -> None:
    from aiida_wyckoffdiff.codes import get_or_create_code
    from aiida_wyckoffdiff.exceptions import ConfigurationError
    from aiida_wyckoffdiff.workchains.dft_hull import DftHullWorkChain

    monkeypatch.setitem(sys.modules, 'aiida_quantumespresso', None)  # what an environment without the extra has
    with pytest.raises(ConfigurationError, match=r'pip install aiida-wyckoffdiff\[dft\]'):
        dft_hull_builder('test/any', pseudo_family=FAMILY)
    structure = orm.StructureData(pymatgen=li2o())
    _, node = run_get_node(
        DftHullWorkChain, structures={'li2o': structure}, code=get_or_create_code(aiida_localhost), pseudo_family=FAMILY
    )
    assert node.exit_status == 203 and 'pip install aiida-wyckoffdiff[dft]' in node.exit_message
