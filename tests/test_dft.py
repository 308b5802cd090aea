"""The DFT follow-up with a real pw.x: a small Li-O hull relaxed by Quantum ESPRESSO, and its bad inputs.

pw.x and the pseudopotentials come from Debian (scripts/install-qe.sh, run by `make test`). Without them the
pw.x tests skip, saying so, except under CI (the CI variable set), where they fail: CI must never skip them.
"""

from __future__ import annotations

import os
import shutil

import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.dft import DEBIAN_PSEUDO_DIR, debian_pseudopotentials, dft_hull_builder, get_or_create_pseudo_family

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

FAMILY = 'test/pbesol'
CUTOFFS = (25.0, 200.0)
"""Ry: far below converged for these pseudopotentials, enough for a real, fast calculation."""
OPTIONS = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False,
           'max_wallclock_seconds': 900, 'environment_variables': {'OMP_NUM_THREADS': '1'}}
SMALL = {
    'base_relax': {'kpoints_distance': 0.6, 'meta_parameters': {'conv_thr_per_atom': 1e-7, 'etot_conv_thr_per_atom': 1e-3},
                   'pw': {'parameters': {'CONTROL': {'forc_conv_thr': 1e-2}, 'CELL': {'press_conv_thr': 2.0}}}},
    'base_init_relax': {'kpoints_distance': 0.6},
    'meta_convergence': False,
}
"""Coarse k-points and loose thresholds: the relaxations converge in a few steps each."""


def li2o() -> Structure:
    """Antifluorite Li2O, 3-atom primitive cell, lattice constant 2 % off so that the cell relaxation has work."""
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.70), ['O', 'Li'], [[0, 0, 0], [0.25, 0.25, 0.25]]).get_primitive_structure()


def lio_rocksalt() -> Structure:
    """A made-up LiO in the rocksalt structure: 2 atoms, above the hull of Li2O and O2."""
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.30), ['Li', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def references() -> dict[str, orm.StructureData]:
    """Cheap elemental references: bcc Li (1 atom) and an O2 molecule in a 5 Å box."""
    lithium = Structure.from_spacegroup('Im-3m', Lattice.cubic(3.44), ['Li'], [[0, 0, 0]]).get_primitive_structure()
    oxygen = Structure(Lattice.cubic(5.0), ['O', 'O'], [[0, 0, 0], [0, 0, 1.23]], coords_are_cartesian=True)
    return {'Li': orm.StructureData(pymatgen=lithium), 'O': orm.StructureData(pymatgen=oxygen)}


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


def test_li_o_hull_with_pw(pw_code, family) -> None:
    group = group_of(li2o(), lio_rocksalt())
    builder = dft_hull_builder(group.label, pseudo_family=FAMILY, code=pw_code.full_label, protocol='fast',
                               overrides=SMALL, options=OPTIONS, references=references(),
                               reference_relax_types={'O': 'positions'})
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
        assert row['potential_e_above_hull'] is None and row['difference'] is None  # a plain group: DFT only
    # Li2O is strongly bound and on the DFT hull; rocksalt LiO lies above the Li2O-O2 tie line.
    assert -3.0 < li2o_row['dft_formation_energy_per_atom'] < -1.0, li2o_row
    assert li2o_row['dft_e_above_hull'] == pytest.approx(0.0, abs=1e-9)
    assert lio_row['dft_e_above_hull'] > 0.0, lio_row
    # The hull is pymatgen's, from the reported energies.
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    entries = [PDEntry(element, energy) for element, energy in elemental.items()]
    entries += [PDEntry(formula, row['dft_energy_per_atom'] * (3 if formula == 'Li2O' else 2)) for formula, row in rows.items()]
    diagram = PhaseDiagram(entries)
    assert diagram.get_e_above_hull(entries[-1]) == pytest.approx(lio_row['dft_e_above_hull'], abs=1e-6)
    # The cell was relaxed: the DFT structure is not the input one, and it traces back to it.
    relaxed = node.outputs.relaxed
    assert set(relaxed) == {*(f'node_{n.pk}' for n in group.nodes), 'reference_Li', 'reference_O'}
    inputs = {key: structure for key, structure in node.inputs.structures.items()}
    li2o_key = next(key for key, structure in inputs.items() if structure.get_formula() == 'Li2O')
    assert relaxed[li2o_key].get_cell_volume() != pytest.approx(inputs[li2o_key].get_cell_volume(), rel=1e-4)
    assert relaxed['reference_O'].get_cell_volume() == pytest.approx(125.0)  # relaxed with a fixed box
    relax = orm.load_node(li2o_row['relax_pk'])
    assert relax.process_label == 'PwRelaxWorkChain' and relax.inputs.structure.uuid == inputs[li2o_key].uuid
    print({formula: {k: row[k] for k in ('dft_energy_per_atom', 'dft_formation_energy_per_atom', 'dft_e_above_hull', 'final_max_force')} for formula, row in rows.items()}, elemental)
    for calc in relax.called_descendants:
        if isinstance(calc, orm.CalcJobNode):
            print(calc.pk, calc.process_label, calc.inputs.parameters['CONTROL']['calculation'], calc.exit_status, calc.outputs.output_parameters.get('wall_time_seconds'))
