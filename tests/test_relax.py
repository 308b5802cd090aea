"""Batched relaxation: real structures with CHGNet, a test-built MatterSim checkpoint, failures kept per structure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aiida_wyckoffdiff.exceptions import RelaxerError
from aiida_wyckoffdiff.files import file_sha256
from aiida_wyckoffdiff.hull import MPHull
from aiida_wyckoffdiff.potentials import Evaluation, LoadedPotential, load_potential
from aiida_wyckoffdiff.relax import STAGED, RelaxSettings, evaluate_structures, relax_all, relax_structures

from .relax_fixtures import _one_torch_thread, chgnet, li2o, rutile, spinel  # noqa: F401


@pytest.fixture(scope='module')
def relaxed(chgnet, li2o, rutile, spinel):  # noqa: F811
    return relax_structures([li2o, rutile, spinel], chgnet)


def test_relaxes_real_structures_keeping_symmetry(relaxed):
    """Li2O, rutile and spinel converge, keep their space group, and reach MP's lattice within 2 %."""
    known_lattices = {'Li2O': 4.65, 'TiO2': 4.65, 'MgAl2O4': 8.17}  # conventional a in Å (MP, PBE)
    for outcome in relaxed:
        assert outcome.ok and outcome.converged, outcome.reason
        assert 0 < outcome.steps < 300
        assert outcome.spacegroup_final == outcome.spacegroup_initial
        conventional = outcome.structure.to_conventional()
        assert conventional.lattice.a == pytest.approx(known_lattices[outcome.formula], rel=0.02)
    assert [o.spacegroup_final for o in relaxed] == [225, 136, 227]


def test_outcome_energy_is_the_potential_energy_of_the_final_structure(relaxed, chgnet):  # noqa: F811
    """The recorded energy belongs to the returned geometry, and names the weights that produced it."""
    final = [o.structure for o in relaxed]
    assert evaluate_structures(final, chgnet) == pytest.approx([o.energy_per_atom for o in relaxed], abs=1e-4)
    assert all(o.checkpoint_sha256 == file_sha256(chgnet.checkpoint) for o in relaxed)


def test_chgnet_one_backward_pass_equals_chgnet_own_prediction(chgnet, li2o, rutile, spinel):  # noqa: F811
    """Our single gradient pass gives CHGNet's own energies, forces and stresses, alone and in one batch."""
    from ase.units import GPa
    from pymatgen.io.ase import AseAtomsAdaptor

    rattled = spinel.copy().perturb(0.05, min_distance=0.01)  # non-zero forces on every atom
    structures = [li2o, rutile, rattled]
    atoms = [AseAtomsAdaptor.get_atoms(structure) for structure in structures]
    chgnet.model.requires_grad_(True)  # as CHGNet's own path runs it
    try:
        expected = chgnet.model.predict_structure(structures, task='efs', batch_size=3)
    finally:
        chgnet.model.requires_grad_(False)
    for ours in (chgnet.evaluate(atoms), [chgnet.evaluate([a])[0] for a in atoms]):
        for evaluation, prediction, structure in zip(ours, expected, structures, strict=True):
            assert evaluation.energy == pytest.approx(float(prediction['e']) * len(structure), abs=1e-4)
            assert np.abs(evaluation.forces - prediction['f']).max() < 1e-4
            assert np.abs(evaluation.stress - prediction['s'] * GPa).max() < 1e-5  # eV/Å³ (~2 MPa)
    assert np.abs(ours[2].forces).max() > 0.1


def test_batch_equals_one_by_one(relaxed, chgnet, li2o, rutile):  # noqa: F811
    """Lockstep batching must not couple the structures: relaxing each alone gives the same trajectory."""
    alone = [relax_structures([s], chgnet)[0] for s in (li2o, rutile)]
    for single, batched in zip(alone, relaxed):
        assert single.steps == batched.steps
        assert single.energy_per_atom == pytest.approx(batched.energy_per_atom, abs=1e-5)


def test_relaxation_lowers_energy_of_distorted_structure(chgnet, rutile):  # noqa: F811
    before = evaluate_structures([rutile], chgnet)[0]
    after = relax_structures([rutile], chgnet, RelaxSettings(optimizer='BFGS'))[0]
    assert after.converged
    assert after.energy_per_atom < before - 0.01


def test_fix_symmetry_symmetrizes_and_keeps_space_group(chgnet, li2o):  # noqa: F811
    """Noise of 0.01 Å hides Fm-3m at a tight tolerance; FixSymmetry restores it exactly and keeps it."""
    from pymatgen.core import Structure

    from aiida_wyckoffdiff.relax import spacegroup_of

    noise = np.random.default_rng(0).normal(scale=0.01, size=(len(li2o), 3))
    rattled = Structure(li2o.lattice, li2o.species, li2o.cart_coords + noise, coords_are_cartesian=True)
    assert spacegroup_of(rattled, 1e-4) != 225
    fixed = relax_structures([rattled], chgnet, RelaxSettings(fix_symmetry=True))[0]
    assert fixed.converged and fixed.spacegroup_initial == fixed.spacegroup_final == 225
    assert spacegroup_of(fixed.structure, 1e-4) == 225


def test_bad_structures_fail_alone(chgnet, li2o):  # noqa: F811
    from pymatgen.core import Lattice, Structure

    overlapping = Structure(Lattice.cubic(4.0), ['Li', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    uncovered = Structure(Lattice.cubic(3.5), ['Am'], [[0, 0, 0]])
    outcomes = relax_structures([overlapping, li2o, uncovered], chgnet)
    assert 'overlapping atoms' in outcomes[0].reason
    assert outcomes[1].ok and outcomes[1].converged
    assert 'Am not covered' in outcomes[2].reason
    assert [o.index for o in outcomes] == [0, 1, 2]


class _LennardJones(LoadedPotential):
    """A cheap pair potential standing in for a model, with hooks to misbehave on chosen structures."""

    batch_size = 4

    def __init__(self, checkpoint, poison: str | None = None, nan_for: str | None = None, sigma: float = 2.0) -> None:
        super().__init__('lj', checkpoint)
        self.poison, self.nan_for, self.sigma = poison, nan_for, sigma

    @property
    def supported_numbers(self) -> frozenset[int]:
        return frozenset(range(1, 95))

    def evaluate(self, atoms_list):
        from ase.calculators.lj import LennardJones
        from ase.stress import voigt_6_to_full_3x3_stress

        results = []
        for atoms in atoms_list:
            symbols = set(atoms.get_chemical_symbols())
            if self.poison in symbols:
                raise RuntimeError('graph construction failed')
            atoms = atoms.copy()
            atoms.calc = LennardJones(sigma=self.sigma, epsilon=0.1, rc=3 * self.sigma)
            energy = np.nan if self.nan_for in symbols else atoms.get_potential_energy()
            results.append(Evaluation(energy, atoms.get_forces(), voigt_6_to_full_3x3_stress(atoms.get_stress())))
        return results


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / 'weights.bin'
    path.write_bytes(b'weights')
    return path


def _cubic(element: str, a: float = 3.0):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), [element], [[0, 0, 0]])


def test_model_error_in_a_batch_fails_only_that_structure(checkpoint):
    potential = _LennardJones(checkpoint, poison='Na')
    outcomes = relax_structures([_cubic('Ar'), _cubic('Na'), _cubic('Kr')], potential, RelaxSettings(steps=10))
    assert 'graph construction failed' in outcomes[1].reason
    assert outcomes[0].ok and outcomes[2].ok and outcomes[0].steps > 0


def test_nan_energy_is_reported(checkpoint):
    outcomes = relax_structures(
        [_cubic('Ar'), _cubic('Xe')], _LennardJones(checkpoint, nan_for='Xe'), RelaxSettings(steps=10)
    )
    assert outcomes[0].ok
    assert 'non-finite' in outcomes[1].reason


def test_exploding_cell_is_reported(checkpoint):
    """A cell compressed to a third of the pair distance blows up under LJ repulsion."""
    outcome = relax_structures(
        [_cubic('Ar', a=1.0)], _LennardJones(checkpoint, sigma=3.0), RelaxSettings(min_distance=0.1)
    )[0]
    assert 'exploded' in outcome.reason


def test_step_limit_keeps_last_energy(chgnet, rutile):  # noqa: F811
    outcome = relax_structures([rutile], chgnet, RelaxSettings(steps=2))[0]
    assert outcome.ok and not outcome.converged and outcome.steps == 2
    assert np.isfinite(outcome.energy)


def test_unknown_relaxer_and_unreadable_checkpoint(tmp_path):
    with pytest.raises(RelaxerError, match='Unknown relaxer'):
        load_potential('mace')
    broken = tmp_path / 'broken.pth'
    broken.write_text('not a checkpoint')
    with pytest.raises(RelaxerError, match='cannot be loaded'):
        load_potential('chgnet', broken)


@pytest.fixture
def mattersim_home(tmp_path, monkeypatch):
    """MatterSim writes into ``~/.local/mattersim``: keep it in a temporary HOME."""
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('WYCKOFFDIFF_MATTERSIM_CHECKPOINT', raising=False)
    return tmp_path


@pytest.fixture
def mattersim_checkpoint(mattersim_home):
    """The real M3GNet architecture, randomly initialised, saved by MatterSim itself.

    Random weights give forces of ~1e-3 eV/Å; scaling the energy normalizer makes the optimizer move.
    """
    import torch
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
    from mattersim.forcefield.potential import Potential

    torch.manual_seed(0)
    model = M3Gnet(device='cpu')
    with torch.no_grad():
        model.normalizer.scale.mul_(200.0)
    path = mattersim_home / 'checkpoints' / 'tiny-m3gnet.pth'
    Potential(model, device='cpu').save(str(path))
    return path


def test_mattersim_loads_test_checkpoint_and_relaxes(mattersim_checkpoint, li2o, monkeypatch):  # noqa: F811
    monkeypatch.setenv('WYCKOFFDIFF_MATTERSIM_CHECKPOINT', str(mattersim_checkpoint))
    potential = load_potential('mattersim')
    assert potential.checkpoint == mattersim_checkpoint
    assert potential.checkpoint_sha256 == file_sha256(mattersim_checkpoint)
    before = evaluate_structures([li2o], potential)[0]
    outcome = relax_structures([li2o, li2o.copy()], potential, RelaxSettings(fmax=0.01, steps=15))
    assert outcome[0].steps > 0 and np.isfinite(outcome[0].energy)
    assert outcome[0].energy_per_atom < before
    assert outcome[0].energy_per_atom == pytest.approx(outcome[1].energy_per_atom)
    assert outcome[0].potential == 'mattersim'


def test_mattersim_missing_named_checkpoint_fails_fast(mattersim_home, monkeypatch):
    """No cached 1M file and no server: a clear error naming the file, not a hanging download."""
    from aiida_wyckoffdiff import potentials

    monkeypatch.setattr(potentials, '_MATTERSIM_DOWNLOAD_HOST', ('127.0.0.1', 9))
    with pytest.raises(RelaxerError, match='mattersim-v1.0.0-5M.pth is not in .*WYCKOFFDIFF_MATTERSIM_CHECKPOINT'):
        load_potential('mattersim', '5M')
    with pytest.raises(RelaxerError, match='does not exist'):
        load_potential('mattersim', mattersim_home / 'absent.pth')


def _per_atom_above(offset: float):
    """A stand-in hull: the distance is the energy per atom above ``offset``."""

    def distance(structure, energy: float) -> float:
        return energy / len(structure) - offset

    return distance


def test_pruning_stops_exactly_the_structures_above_the_threshold(checkpoint, tmp_path):
    """A pruned relaxation is the unpruned one cut at ``prune_after``: the structures whose energy then lies above
    the threshold stop there, recorded with the step, their energy and why; the others relax to the end."""
    from ase.io import read

    potential = _LennardJones(checkpoint, sigma=2.0)
    structures = [_cubic('Ar', a) for a in (1.9, 2.3, 3.1)]
    distance = _per_atom_above(-0.6)
    free = RelaxSettings(fmax=0.01, steps=12, primitive=False)
    trajectories = [tmp_path / f'{i}.traj' for i in range(len(structures))]
    full = relax_structures(structures, potential, free, trajectories=trajectories)
    at_step = [read(path, index=4).get_potential_energy() + 0.6 for path in trajectories]
    threshold = sorted(at_step)[0]  # the lowest: exactly two are above it
    pruned = relax_structures(
        structures, potential, replace(free, prune_above=threshold, prune_after=4), hull_distance=distance
    )
    above = {i for i, d in enumerate(at_step) if d > threshold}
    assert len(above) == 2 and {i for i, o in enumerate(pruned) if o.pruned} == above
    for index, (cut, whole) in enumerate(zip(pruned, full)):
        if index in above:
            assert cut.steps == 4 and not cut.converged and cut.ok
            assert cut.energy_per_atom == pytest.approx(at_step[index] - 0.6)
            assert f'{at_step[index]:.3f} eV/atom above the hull after 4 steps (> {threshold})' == cut.pruned
        else:
            assert cut.pruned is None and cut.steps == whole.steps
            assert cut.energy_per_atom == pytest.approx(whole.energy_per_atom)


def test_settings_that_need_a_hull_refuse_to_run_without_one(checkpoint):
    with pytest.raises(ValueError, match='give hull_distance'):
        relax_structures([_cubic('Ar')], _LennardJones(checkpoint), RelaxSettings(prune_above=0.5))
    with pytest.raises(ValueError, match='prune_above must be a finite'):
        RelaxSettings(prune_above=float('nan'))
    with pytest.raises(ValueError, match='fmax must be a positive'):
        RelaxSettings(fmax=0)


def test_fix_symmetry_false_alone_is_the_free_relaxation(checkpoint):
    """The old behaviour is one setting away: without the symmetric stage there is no free stage to add."""
    potential = _LennardJones(checkpoint, sigma=2.0)
    settings = replace(STAGED, fix_symmetry=False, prune_above=None)
    assert not settings.needs_hull
    staged_off, plain = (relax_structures([_cubic('Ar', 2.5)], potential, s)[0]
                         for s in (settings, RelaxSettings(fmax=STAGED.fmax, steps=STAGED.steps,
                                                           bfgs_alpha=STAGED.bfgs_alpha)))
    assert len(staged_off.stages) == 1 and staged_off.kept_spacegroup is None
    assert (staged_off.steps, staged_off.energy) == (plain.steps, plain.energy)


# CHGNet 0.3.0's energies of the Li and O ground states, as relax_all measures them at fmax 0.1 (eV/atom).
LI_O_ELEMENTAL = {'Li': -1.882, 'O': -4.913}


def test_staged_protocol_relaxes_freely_only_near_the_hull(chgnet, li2o):  # noqa: F811
    """Li2O (on the hull) gets a free stage after the symmetric one and keeps Fm-3m; LiO in the CsCl arrangement,
    far above the hull, stays symmetric; both record each stage. Li2O's free stage stays in Fm-3m, so the result is
    the symmetric stage's exactly cubic structure, not a rattled one that a tight tolerance reads lower."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    high = Structure.from_spacegroup(221, Lattice.cubic(3.0), ['Li', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    settings = replace(STAGED, prune_above=None, free_within=0.2)  # CsCl LiO ends 0.27 eV/atom above the hull
    hull = MPHull(apply_mp2020=False, elemental=LI_O_ELEMENTAL)
    lithia, far = relax_all([li2o, high], chgnet, settings, hull=hull).outcomes
    assert [s['fix_symmetry'] for s in lithia.stages] == [True, False]
    assert lithia.kept_spacegroup and lithia.spacegroup_final == 225 and lithia.e_above_hull < settings.free_within
    assert lithia.energy_per_atom == lithia.stages[0]['energy_per_atom']
    assert SpacegroupAnalyzer(lithia.structure, symprec=1e-4).get_space_group_number() == 225
    assert len(far.stages) == 1 and far.stages[0]['e_above_hull'] > settings.free_within and far.kept_spacegroup is None
    assert far.spacegroup_final == 221


def test_free_stage_keeps_the_symmetric_structure_only_where_it_found_the_same_minimum(chgnet):  # noqa: F811
    """Er5Ni3 realized from its template (P6_3/mcm): the free stage ends a fraction of a meV/atom lower, still
    P6_3/mcm at 0.1 Å, but rattled enough that spglib's label calls it P1; the result is the symmetric stage's, which
    keeps its label. TiO realized from its template (C2/m): the free stage stays in C2/m but ends more than
    ``SAME_MINIMUM_WITHIN`` lower, another minimum, and is the result."""
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.relax import SAME_MINIMUM_WITHIN
    from aiida_wyckoffdiff.symmetry import Protostructure, structure_label
    from aiida_wyckoffdiff.templates import shipped_templates

    labels = ['A5B3_hP16_193_dg_g:Er-Ni', 'AB_mC8_12_i_i:O-Ti']
    library, structures = shipped_templates(), []
    for label in labels:
        protostructure = Protostructure.from_label(label)
        template = library.templates_for(protostructure, 1)[0]
        structures.append(realize(protostructure, seed=0, template=template, scale_volume=True).structure)
    # ASE's cell scaling, with which these two were found: the staged protocol's own takes TiO to P2_1/m instead.
    settings = replace(STAGED, cell_stiffness=None)
    same, other = relax_all(structures, chgnet, settings, hull=MPHull(apply_mp2020=False)).outcomes
    for outcome in (same, other):
        symmetric, free = outcome.stages
        assert free['spacegroup'] == symmetric['spacegroup'] and outcome.kept_spacegroup
    gain = same.stages[0]['energy_per_atom'] - same.stages[1]['energy_per_atom']
    assert 0 < gain < SAME_MINIMUM_WITHIN and same.energy_per_atom == same.stages[0]['energy_per_atom']
    assert structure_label(same.structure) == labels[0]
    gain = other.stages[0]['energy_per_atom'] - other.stages[1]['energy_per_atom']
    assert gain > SAME_MINIMUM_WITHIN and other.energy_per_atom == other.stages[1]['energy_per_atom']


def test_relax_all_measures_the_hull_against_the_ground_states_it_relaxes(chgnet):  # noqa: F811
    """An input that is the MP ground state is the reference (relaxed freely first); missing ones are added."""
    from aiida_wyckoffdiff.references import elemental_references

    lithium = elemental_references(['Li'])[0].structure
    settings = replace(STAGED, steps=5, prune_after=2)
    with pytest.raises(ValueError, match='give hull'):
        relax_all([lithium], chgnet, settings)
    run = relax_all([lithium], chgnet, settings, hull=MPHull(apply_mp2020=not chgnet.includes_mp2020))
    assert set(run.references) == {'Li'} and run.references['Li'] is run.outcomes[0]
    assert len(run.outcomes[0].stages) == 1 and not run.outcomes[0].stages[0]['fix_symmetry']
    reference = elemental_references(['Li'])[0]
    assert run.elemental['Li'] == pytest.approx(run.outcomes[0].energy_per_atom - reference.formation_energy_per_atom)


def test_model_batches_are_bounded_by_atoms_and_structures(checkpoint):
    """Memory grows with the atoms of a model call: a batch never exceeds ``batch_atoms``, nor ``batch_size``."""
    from ase import Atoms

    from aiida_wyckoffdiff.relax import _model_batches

    potential = _LennardJones(checkpoint)
    potential.batch_atoms = 10
    cells = [Atoms('Ar' * n) for n in (4, 4, 4, 12, 1, 1, 1, 1, 1)]
    assert [[len(a) for a in batch] for batch in _model_batches(potential, cells)] == [[4, 4], [4], [12], [1, 1, 1, 1], [1]]


def test_cli_relaxes_the_lowest_of_a_structure_and_its_alternatives(tmp_path, li2o):  # noqa: F811
    """Li2O as anti-CdI2 layers (P-3m1) and as antifluorite: after the pre-relaxation, which keeps each one's group,
    the antifluorite is 0.11 eV/atom lower, so it is the one relaxed, under the first one's input; both scores and
    the choice are in the results."""
    import json

    from click.testing import CliRunner

    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.cli import main
    from aiida_wyckoffdiff.results_file import read_results

    layers = Structure.from_spacegroup(164, Lattice.hexagonal(3.2, 4.6), ['O', 'Li'], [[0, 0, 0], [1 / 3, 2 / 3, 0.27]])
    layers.to(filename=str(tmp_path / 'first.cif'))
    li2o.to(filename=str(tmp_path / 'first_c1.cif'))
    (tmp_path / 'alternatives.json').write_text(json.dumps({str(tmp_path / 'first.cif'): [str(tmp_path / 'first_c1.cif')]}))
    output = tmp_path / 'relaxed.jsonl'
    arguments = ['relax', str(tmp_path / 'first.cif'), '--alternatives', str(tmp_path / 'alternatives.json'),
                 '--steps', '5', '--workers', '1', '--output', str(output)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    (entry,) = read_results(output.read_text())['structures']
    assert entry["candidates"] == ["first", "first_c1"] and entry["chosen"] == "first_c1", entry["candidate_scores"]
    layers_score, antifluorite_score = entry['candidate_scores']
    assert antifluorite_score < layers_score - 0.05
    assert len(entry['candidate_prerelax_steps']) == 2
    assert all(steps <= 30 for steps in entry['candidate_prerelax_steps'])
    (tmp_path / 'bad.json').write_text(json.dumps({'other.cif': [str(tmp_path / 'first_c1.cif')]}))
    bad = CliRunner().invoke(main, [*arguments[:2], '--alternatives', str(tmp_path / 'bad.json')])
    assert bad.exit_code == 2 and 'other.cif is not one of the INPUTs' in bad.output


def test_single_threaded_linear_algebra_reaches_scipys_own_blas():
    """scipy ships a second OpenBLAS (the cell filter's ``logm``), whose threads spun beside every relaxation when the
    limit ran before it was loaded; a fresh interpreter sees the libraries in the order a relax job loads them."""
    import json
    import subprocess
    import sys

    script = (
        'from aiida_wyckoffdiff.relax import single_threaded_linear_algebra\n'
        'single_threaded_linear_algebra()\n'
        'import ase.filters, scipy.linalg\n'
        'from threadpoolctl import threadpool_info\n'
        'import json\n'
        "print(json.dumps([(i['filepath'].rsplit('/', 1)[-1], i['num_threads']) for i in threadpool_info()"
        " if i['user_api'] == 'blas']))\n"
    )
    output = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True).stdout
    libraries = json.loads(output)
    assert any('scipy_openblas-' in name for name, _ in libraries), libraries  # scipy's own copy is among them
    assert {threads for _, threads in libraries} == {1}, libraries


def test_bfgs_alpha_reaches_the_optimizer_and_keeps_the_end_point(chgnet, spinel):  # noqa: F811
    """A softer first Hessian guess (the staged protocol's) takes fewer steps to the same minimum than ASE's 70."""
    from pymatgen.core import Lattice, Structure

    strained_rutile = Structure.from_spacegroup(
        136, Lattice.tetragonal(4.9, 3.2), ['Ti', 'O'], [[0, 0, 0], [0.27, 0.27, 0]]
    )
    stiff, soft = (
        relax_structures(
            [strained_rutile, spinel], chgnet, RelaxSettings(fmax=0.1, fix_symmetry=True, bfgs_alpha=alpha)
        )
        for alpha in (70.0, STAGED.bfgs_alpha)
    )
    assert all(o.converged for o in stiff + soft)
    assert [o.energy_per_atom for o in soft] == pytest.approx([o.energy_per_atom for o in stiff], abs=2e-3)
    assert soft[0].steps < stiff[0].steps  # 6 against 9 when written
    with pytest.raises(ValueError, match='bfgs_alpha must be a positive'):
        RelaxSettings(bfgs_alpha=0.0)


def test_cell_stiffness_scales_the_cell_and_relaxes_it_further(chgnet, monkeypatch):  # noqa: F811
    """The staged protocol's cell scaling reaches ASE's filter; where ASE's scaling lets ``fmax`` accept a cell still
    under stress, it leaves less stress and a lower energy."""
    import ase.filters
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    # Rock-salt MgO 5 % too small, in its 8-atom conventional cell: ASE's scaling divides the stress by 8.
    squeezed = Structure.from_spacegroup(225, Lattice.cubic(4.21 * 0.95), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    factors = []
    original = ase.filters.FrechetCellFilter
    monkeypatch.setattr(ase.filters, 'FrechetCellFilter',
                        lambda atoms, **kwargs: factors.append(kwargs['exp_cell_factor']) or original(atoms, **kwargs))
    settings = RelaxSettings(fmax=0.1, fix_symmetry=True, primitive=False, bfgs_alpha=STAGED.bfgs_alpha)
    ase_scaling, stiff = (
        relax_structures([squeezed], chgnet, replace(settings, cell_stiffness=stiffness))[0]
        for stiffness in (None, STAGED.cell_stiffness)
    )
    assert factors == [None, pytest.approx((STAGED.cell_stiffness * squeezed.volume / STAGED.bfgs_alpha) ** 0.5)]
    assert ase_scaling.converged and stiff.converged
    stress = [np.abs(chgnet.evaluate([AseAtomsAdaptor.get_atoms(o.structure)])[0].stress).max()
              for o in (ase_scaling, stiff)]
    assert stress[1] < 0.5 * stress[0]  # 2.0 against 5.5 meV/Å³ when written
    assert stiff.energy_per_atom < ase_scaling.energy_per_atom
    with pytest.raises(ValueError, match='cell_stiffness must be a positive'):
        RelaxSettings(cell_stiffness=0.0)


def test_a_refused_step_ends_the_stage_and_keeps_the_structure(chgnet, monkeypatch):  # noqa: F811
    """Where ASE refuses a step (FixSymmetry cannot symmetrize a large cell step), the stage ends unconverged there,
    with the reason, and the structure keeps the energy of where it stood: nothing computed is lost."""
    from ase.optimize import BFGS
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    step, calls = BFGS.step, []

    def refuse_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError('FixSymmetry adjust_cell does not work properly with large deformation gradient step')
        return step(self, *args, **kwargs)

    monkeypatch.setattr(BFGS, 'step', refuse_the_third)
    strained_rutile = Structure.from_spacegroup(
        136, Lattice.tetragonal(4.9, 3.2), ['Ti', 'O'], [[0, 0, 0], [0.27, 0.27, 0]]
    )
    (outcome,) = relax_structures([strained_rutile], chgnet, RelaxSettings(fmax=0.01, fix_symmetry=True))
    assert outcome.ok and not outcome.converged and outcome.steps == 2
    assert outcome.stages[0]['stopped'].startswith('step 3 refused: FixSymmetry')
    evaluated = chgnet.evaluate([AseAtomsAdaptor.get_atoms(outcome.structure)])[0].energy
    assert evaluated / len(outcome.structure) == pytest.approx(outcome.energy_per_atom, abs=1e-5)


def test_candidate_prerelaxation_scales_the_cell_as_the_staged_protocol_does(chgnet, monkeypatch):  # noqa: F811
    """Two candidates of one protostructure are pre-relaxed with the staged protocol's BFGS guess and cell scaling
    (random search 1.05-1.28x per core-minute with them, docs/relaxation.md): the scaling reaches ASE's filter for
    each, from its own volume, and the lower-energy candidate is kept, within the pre-relaxation's 30 steps."""
    import ase.filters
    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.candidates import choose_among

    # Rock-salt MgO 5 % and 2 % too small: the second starts nearer its minimum.
    candidates = [Structure.from_spacegroup(225, Lattice.cubic(4.21 * scale), ['Mg', 'O'], [[0, 0, 0], [0.5] * 3])
                  for scale in (0.95, 0.98)]
    factors = []
    original = ase.filters.FrechetCellFilter
    monkeypatch.setattr(ase.filters, 'FrechetCellFilter',
                        lambda atoms, **kwargs: factors.append(kwargs['exp_cell_factor']) or original(atoms, **kwargs))
    choice = choose_among([candidates], chgnet)[0]
    primitive_volumes = [candidate.volume / 4 for candidate in candidates]  # the pre-relaxation's primitive cells
    assert sorted(factors) == pytest.approx(
        sorted(max(1.0, (STAGED.cell_stiffness * volume / STAGED.bfgs_alpha) ** 0.5) for volume in primitive_volumes)
    )
    assert len(choice.scores) == 2 and all(0 < steps <= 30 for steps in choice.steps)
    assert choice.scores[choice.chosen] == min(choice.scores)
