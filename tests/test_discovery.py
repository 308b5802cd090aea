"""The discovery benchmark's pieces: its metrics on inputs with known answers, its baselines' constraints,
the generate command's new options, and the benchmark's quick run (guidance itself: tests/model/test_sampling.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiida_wyckoffdiff.baselines import WyckoffPrior, random_protostructures, substituted_structures
from aiida_wyckoffdiff.exceptions import ConditionError
from aiida_wyckoffdiff.metrics import composition_plausible, distribution_distance, recall, smact_valid
from aiida_wyckoffdiff.symmetry import structure_label, wyckoff_positions

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ('formula', 'plausible', 'smact'),
    [
        ('Li2O', True, True),
        ('Li2O2', True, True),  # peroxide: a real ground state
        ('LiO2', True, False),  # superoxide: SMACT's integer states cannot balance it
        ('KO2', True, False),
        ('BaO2', True, True),  # alkaline-earth peroxide
        ('TiO3', False, True),  # a peroxide of a transition metal: oxide only, unlike SMACT, which takes O(-1) anywhere
        ('MgAlO5', False, True),  # peroxide only where every cation is alkali or alkaline-earth
        ('Ti5O9', True, False),  # a mixed-valence Magneli phase: SMACT allows one state per element
        ('TiO2', True, True),
        ('Li13O10', False, False),  # would need oxide and peroxide ions at once
        ('LiO8', False, False),
        ('Li3O4', False, False),
        ('Li', True, True),
        ('MgAl', True, True),
    ],
)
def test_composition_checks_know_oxides_peroxides_and_superoxides(formula, plausible, smact) -> None:
    assert composition_plausible(formula) is plausible
    assert smact_valid(formula) is smact


def test_recall_counts_each_held_out_label_in_its_own_request() -> None:
    assert recall(['a', 'b', 'c', 'd'], [['x', 'a'], ['b'], ['a'], []]) == 0.5
    assert recall([], []) == 0.0
    with pytest.raises(ValueError, match='2 held-out labels but 1'):
        recall(['a', 'b'], [['a']])


def test_distribution_distance_of_known_samples() -> None:
    same = distribution_distance([2, 4, 6], [6, 4, 2])
    assert same.wasserstein == 0 and same.jensen_shannon == 0 and same.median == same.reference_median == 4
    shifted = distribution_distance([3, 5, 7], [1, 3, 5])
    assert shifted.wasserstein == pytest.approx(2.0)
    assert shifted.jensen_shannon == pytest.approx(np.sqrt(1 / 3))  # two of three bins shared, base 2
    disjoint = distribution_distance([1, 1], [9, 9])
    assert disjoint.wasserstein == 8 and disjoint.jensen_shannon == pytest.approx(1.0)
    with pytest.raises(ValueError, match='at least one value'):
        distribution_distance([], [1])


@pytest.fixture(scope='module')
def sample_table(sample_dir, tmp_path_factory):
    from aiida_wyckoffdiff.data import build_dataset, load_dataset

    path = tmp_path_factory.mktemp('discovery') / 'sample.jsonl.gz'
    build_dataset(sample_dir, output=path, processes=1, progress=False)
    return load_dataset(path)


def test_prior_counts_the_training_split(sample_table) -> None:
    prior = WyckoffPrior.from_dataset(sample_table)
    train = sample_table[sample_table['split'] == 'train']
    assert set(prior.orbits) == set(train['spacegroup'])
    for group, rows in train.groupby('spacegroup'):
        assert sum(prior.orbits[group].values()) == len(rows)
        assert sum(prior.letters[group].values()) == sum(n for m in rows['wyckoff_matrix'] for _, _, n in m)


def test_random_protostructures_obey_the_models_constraints(sample_table) -> None:
    prior = WyckoffPrior.from_dataset(sample_table)
    groups = sorted(prior.orbits, key=lambda g: -sum(prior.orbits[g].values()))[:4]
    samples = random_protostructures(prior, ('Ti', 'O'), groups, 24, seed=1, max_atoms=40)
    assert len(samples) > 12
    fixed = {g: {p.letter for p in wyckoff_positions(g) if p.is_fixed} for g in groups}
    for sample in samples:
        assert sample.spacegroup in groups
        assert set(sample.elements) == {'O', 'Ti'}
        assert sample.num_atoms <= 40
        letters = [letter for _, letter, n in sample.sites for _ in range(n)]
        assert all(letters.count(letter) == 1 for letter in letters if letter in fixed[sample.spacegroup])
        assert {letter for _, letter, _ in sample.sites} <= set(prior.letters[sample.spacegroup])
    again = random_protostructures(prior, ('Ti', 'O'), groups, 24, seed=1, max_atoms=40)
    assert again == samples
    # A group the training split lacks still gets random structures, on any of its positions.
    assert 230 not in prior.orbits
    unseen = random_protostructures(prior, ('Ti', 'O'), [230], 4, seed=0, max_atoms=200)
    assert unseen and all(s.spacegroup == 230 and set(s.elements) == {'O', 'Ti'} for s in unseen)
    with pytest.raises(ConditionError, match='the prior is empty'):
        WyckoffPrior().draw(225, ('Ti', 'O'), np.random.default_rng(0))


def test_random_protostructures_take_a_share_of_training_arrangements(sample_table) -> None:
    """``known_prototypes``: that share of each group's slots are distinct training arrangements with the elements,
    the rest prior draws; a group whose library is smaller gives the library all it has."""
    from aiida_wyckoffdiff.templates import shipped_templates

    prior = WyckoffPrior.from_dataset(sample_table)
    samples = random_protostructures(prior, ('Li', 'O'), [225, 221], 8, seed=0, max_atoms=20, known_prototypes=0.5)
    assert len(samples) == 8
    for group in (225, 221):
        library = set(shipped_templates().arrangements(('Li', 'O'), group, max_atoms=20))
        chosen = [s for s in samples if s.spacegroup == group and s in library]
        assert len(chosen) >= 2 and len(set(chosen)) == len(chosen)
    few = random_protostructures(prior, ('Li', 'O'), [225], 6, seed=0, max_atoms=12, known_prototypes=1.0)
    assert set(shipped_templates().arrangements(('Li', 'O'), 225, max_atoms=12)) <= set(few)


def test_substitution_proposes_the_source_structures_in_the_new_system(sample_structures) -> None:
    """Ti4+ -> Sn4+ in the TiO2 polymorphs of the sample; the ternary spinel has the wrong arity to be a source."""
    titania = [s for s in sample_structures.values() if s.composition.reduced_formula == 'TiO2']
    sources = {structure_label(s).replace(':O-Ti', ':O-Sn') for s in titania}
    proposals = substituted_structures([*titania, sample_structures['mp-3536']], ('Sn', 'O'))
    assert len(proposals) >= 5
    for proposal in proposals:
        assert proposal.composition.reduced_formula == 'SnO2'
        assert structure_label(proposal) in sources
        assert not any(hasattr(site.specie, 'oxi_state') for site in proposal)
    assert substituted_structures(titania, ('Sn', 'O'), max_structures=2) == proposals[:2]


def test_generate_cli_refuses_an_unknown_guided_condition(tmp_path) -> None:
    from click.testing import CliRunner

    from aiida_wyckoffdiff.cli.base import main

    result = CliRunner().invoke(main, ['generate', '--chemsys', 'Li-O', '--guided', 'chemsys,colour', '--steps', '2'])
    assert result.exit_code == 1
    assert "cannot guide on 'colour'" in result.output


@pytest.fixture
def benchmark(monkeypatch):  # noqa: ANN201 - the benchmark script as a module
    import importlib.util

    spec = importlib.util.spec_from_file_location('discovery_benchmark', ROOT / 'benchmarks' / 'discovery.py')
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_all_sources_counts_a_hit_two_sources_found_once(benchmark) -> None:
    """The combined row of a system: hits are the union of the sources' hit labels, costs and samples add up."""
    row = {'chemsys': 'Li-O', 'distinct': 3, 'relaxed': 3, 'pruned': 0, 'hull_phases_found': []}
    rows = [
        {**row, 'samples': 4, 'core_minutes': 1.0, 'hit_labels': ['A2B_cF12_225_c_a:Li-O', 'AB_hP8_194_ac_f:Li-O']},
        {**row, 'samples': 4, 'core_minutes': 3.0, 'hit_labels': ['A2B_cF12_225_c_a:Li-O'],
         'hull_phases_found': ['Li2O (mp-1960, test)']},
    ]
    combined = benchmark.all_sources(rows)
    assert combined['hits'] == 2 and combined['hits_in_more_than_one_source'] == 1
    assert combined['samples'] == 8 and combined['relaxed'] == 6 and combined['core_minutes'] == 4.0
    assert combined['hits_per_core_minute'] == 0.5 and combined['hits_per_100_samples'] == 25.0
    assert combined['hull_phases_found'] == ['Li2O (mp-1960, test)']


def test_paired_comparison_of_the_same_protostructures(benchmark) -> None:
    """K = 4 against K = 1 on the protostructures both relaxed: differences per label, ties within 5 meV/atom."""
    one = {'chemsys': 'Li-O', 'generator': 'model:k=1', 'core_minutes': 2.0,
           'e_above_hull_by_request': {'a': 0.30, 'b': 0.12, 'c': 0.05, 'd': 0.50}}
    four = {'chemsys': 'Li-O', 'generator': 'model:k=4', 'core_minutes': 3.0,
            'e_above_hull_by_request': {'a': 0.20, 'b': 0.08, 'c': 0.052, 'e': 0.0}}
    pair = benchmark.paired_comparison(one, four)
    assert pair['pairs'] == 3 and pair['lower'] == 2 and pair['higher'] == 0  # c differs by 2 meV: a tie
    assert pair['median_difference'] == pytest.approx(-0.04) and pair['mean_difference'] == pytest.approx(-0.046)
    assert pair['hits_only_second'] == 1 and pair['hits_only_first'] == 0  # b crosses 0.1 eV/atom
    assert pair['core_minutes_ratio'] == 1.5
    assert benchmark.paired_comparison(one, {**four, 'e_above_hull_by_request': {'e': 0.0}}) is None


def test_each_arm_is_paired_with_the_earlier_arm_of_the_same_samples(benchmark) -> None:
    """Arms that differ only in realization or BFGS setting share their samples: those are the pairs to compare."""
    names = ['model:g=2,real=template,alpha=70', 'model:g=2,real=template,alpha=20', 'model:g=2',
             'random:real=template,alpha=70', 'random:real=template,alpha=20', 'model:g=1']
    rows = [{'generator': name} for name in names]
    baselines = [benchmark._baseline_of(row, rows)['generator'] for row in rows[1:]]
    assert baselines == [names[0], names[1], names[0], names[3], names[0]]


def test_distribution_comparison_of_relaxed_energies(benchmark) -> None:
    """Every relaxed structure of one generator below every one of the other: probability 1 of ending lower, a small
    p-value; the same values on both sides: probability one half, p = 1."""
    first = {'chemsys': 'Li-O', 'generator': 'model:e=0', 'e_above_hull_values': [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}
    lower = {'chemsys': 'Li-O', 'generator': 'model:e=0.3', 'e_above_hull_values': [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]}
    shift = benchmark.distribution_comparison(first, lower)
    assert shift['probability_lower'] == 1.0 and shift['p_lower_or_higher'] < 0.01
    assert shift['median'] == '0.125 / 0.550' and shift['within_0.2'] == '0.833 / 0.000'
    same = benchmark.distribution_comparison(first, {**first, 'generator': 'again'})
    assert same['probability_lower'] == 0.5 and same['p_lower_or_higher'] == 1.0
    assert benchmark.distribution_comparison(first, {**lower, 'e_above_hull_values': []}) is None


def test_model_generator_takes_another_checkpoint(benchmark) -> None:
    """``ckpt=`` names a checkpoint file beside the sampling settings; without it the shipped one is used."""
    generator = benchmark.as_generator('model:g=1,guided=all,ckpt=/tmp/longer.pt,k=2')
    assert generator.checkpoint == '/tmp/longer.pt' and generator.candidates == 2
    assert generator.config[0].guidance_scale == 1.0
    assert benchmark.as_generator('model:g=2').checkpoint is None
    screened = benchmark.as_generator('model:g=2,e=0.3,eg=0,es=3,ckpt=/tmp/round2.pt')
    assert screened.config[0].energy_screen == 3 and screened.config[1] == 0.3
    assert benchmark.as_generator('model:g=2').config[0].energy_screen == 1


def test_every_generator_takes_its_own_relaxation_settings(benchmark) -> None:
    """``alpha=`` and ``cell=`` relax one arm at another BFGS guess and cell scaling; without them the run's staged
    settings hold."""
    assert benchmark.as_generator('model:g=2,real=template,alpha=20').relax_changes == {'bfgs_alpha': 20.0}
    assert benchmark.as_generator('random:real=template,alpha=70,cell=ase').relax_changes == {
        'bfgs_alpha': 70.0, 'cell_stiffness': None}
    assert benchmark.as_generator('substitution:cell=0.5').relax_changes == {'cell_stiffness': 0.5}
    assert benchmark.as_generator('random').relax_changes == {}
    with pytest.raises(SystemExit, match='unknown generator'):
        benchmark.as_generator('random:beta=20')


def test_discovery_benchmark_quick_run(sample_dir, tmp_path) -> None:
    """The benchmark's CI-size path on the committed sample rows: both levels, every kind of generator."""
    output = tmp_path / 'discovery.json'
    completed = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'discovery.py'), '--quick', '--data-dir', str(sample_dir),
         '--dataset', str(tmp_path / 'sample.jsonl.gz'), '--output', str(output)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(output.read_text())
    generation = {row['generator']: row for row in document['generation']}
    assert {'random', 'substitution'} <= generation.keys() and any(name.startswith('model:') for name in generation)
    for row in generation.values():
        assert row['samples'] + row['failed_slots'] == row['slots'] or row['generator'] == 'substitution'
        assert 0 <= row['recall'] <= 1
    outcome = document['outcome']
    assert {row['generator'] for row in outcome} >= {'random', 'substitution'}
    for row in outcome:
        assert row['chemsys'] == 'Li-O'
        assert row['relaxed'] <= row['distinct'] <= row['samples'], 'only distinct candidates are relaxed'
        assert row['core_minutes'] > 0 or not row['relaxed'], 'relaxing costs CPU time'
        assert row['hits_interval_90'][0] <= row['hits'] <= row['hits_interval_90'][1]
    combined = outcome[-1]
    assert combined['generator'] == 'all sources'
    singles = outcome[:-1]
    assert max(r['hits'] for r in singles) <= combined['hits'] <= sum(r['hits'] for r in singles)
    assert combined['samples'] == sum(r['samples'] for r in singles)
    assert '| Li-O | random |' in completed.stdout
    for row in document['system']:
        assert row['samples'] + row['failed_slots'] == 4 or row['generator'] == 'substitution'
        if not row['distinct']:  # substitution may have nothing to propose from the sample rows
            assert row['training_prototype'] is None and row['generator'] == 'substitution'
            continue
        assert row['training_prototype'] + row['novel_prototype'] == pytest.approx(1.0, abs=0.002)
        assert row['identical_to_training'] <= row['training_prototype']
    assert any(row['distinct'] for row in document['system'] if row['generator'].startswith('model:'))


def test_system_level_counts_training_prototypes_among_distinct_samples(benchmark, sample_table) -> None:
    """Samples copied from training crystals are all training prototypes and identical; the same prototypes with
    other elements are training prototypes but not identical; each sample counts once however often drawn."""
    from types import SimpleNamespace

    from aiida_wyckoffdiff.symmetry import Protostructure
    from aiida_wyckoffdiff.templates import arrangement_of

    train = sample_table[sample_table['split'] == 'train']
    binaries = train[train['chemsys'].str.count('-') == 1]['label'].head(3).tolist()
    swapped = [f"{label.split(':')[0]}:Kr-Xe" for label in binaries]  # the prototype, in elements no crystal has
    made_up = ['A9B_cF40_225_ace_b:Li-O']  # a prototype no crystal has
    samples = [*binaries, *binaries, *swapped, *made_up]
    context = SimpleNamespace(
        seed=0, frame=sample_table, train_labels=set(train['label']),
        train_prototypes={label.split(':')[0] for label in train['label']},
        train_arrangements={arrangement_of(label) for label in train['label']},
        generate=lambda *_: ([Protostructure.from_label(label) for label in samples], 0),
    )
    row = benchmark.system_level(context, benchmark.as_generator('random'), ('Li', 'O'), len(samples), [225])
    assert row['samples'] == len(samples) and row['distinct'] == 7
    assert row['training_prototype'] == round(6 / 7, 3) and row['identical_to_training'] == round(3 / 7, 3)
    assert row['novel_prototype'] == round(1 / 7, 3) and row['training_arrangement'] == round(6 / 7, 3)
    samples = ['A2B_cF12_225_c_a:Li-O', 'AB3_cP4_221_a_c:Li-O']  # Li2O balances, LiO3 does not
    every_group = sorted(set(sample_table['spacegroup']))
    row = benchmark.system_level(context, benchmark.as_generator('random'), ('Li', 'O'), len(samples), every_group)
    assert row['plausible'] == 0.5 and row['distinct_compositions'] == 2
    assert 0 < row['real_plausible'] <= 1 and row['real_crystals'] > 0


def test_outcome_plot_draws_the_committed_rows_and_refuses_what_is_not_there(tmp_path) -> None:
    """``plot_outcome.py`` on two committed side-by-side files: every bar is the file's row, the PNG is written; a
    generator the files lack, or a row two files both hold, is refused with a message instead of a wrong figure."""
    script = ROOT / 'benchmarks' / 'plot_outcome.py'
    files = [ROOT / 'benchmarks' / f'discovery_cell_stiffness_{name}.json' for name in ('er_ni_ti_o', 'li_o_cu_nb_o')]
    model, random = 'model:g=2,guided=e_above_hull,real=template,k=2', 'random:real=template,k=2'
    output = tmp_path / 'outcome.png'
    result = subprocess.run([sys.executable, str(script), *map(str, files), '--generators', model, random,
                             '--labels', 'model', 'random search', '--output', str(output)],
                            capture_output=True, text=True, check=True)
    assert output.read_bytes().startswith(b'\x89PNG')
    rows = [row for path in files for row in json.loads(path.read_text())['outcome']
            if row['generator'] in (model, random)]
    printed = [line.split() for line in result.stdout.splitlines() if ' hits ' in line]
    assert len(printed) == len(rows) == 7  # Cu-Nb-O's random arm ran in another file
    for row in rows:
        label = ['model'] if row['generator'] == model else ['random', 'search']
        assert [row['chemsys'], *label, str(row['hits']), 'hits', f"{row['core_minutes']:.2f}", 'core-min',
                f"{row['hits_per_core_minute']:.2f}"] in printed
    for arguments, message in (([str(files[0]), '--generators', 'model:nonsense'], 'no outcome rows of model:nonsense'),
                               ([str(files[0]), str(files[0]), '--generators', model], 'in more than one file')):
        refused = subprocess.run([sys.executable, str(script), *arguments, '--output', str(tmp_path / 'x.png')],
                                 check=False, capture_output=True, text=True)
        assert refused.returncode != 0 and message in refused.stderr
        assert not (tmp_path / 'x.png').exists()
