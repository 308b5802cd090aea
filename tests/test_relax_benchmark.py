"""The relaxation benchmark's quick path and three of the experiments run end to end on the committed inputs (their
numbers are in docs); the experiments import the benchmark's reader from the folder above theirs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[1] / 'benchmarks' / 'relax.py'
EXPERIMENTS = BENCHMARK.parent / 'experiments'


def test_quick_benchmark_compares_the_three_runs(tmp_path) -> None:
    output = tmp_path / 'relax.json'
    result = subprocess.run([sys.executable, str(BENCHMARK), '--quick', '--workers', '1', '--json', str(output)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(output.read_text())
    runs = document['results']
    assert list(runs) == ['today', 'staged', 'pruned']
    assert all(run['finished'] == 3 and run['cpu_s'] > 0 for run in runs.values())
    assert runs['today']['pruned'] == runs['staged']['pruned'] == 0
    assert all(row['stage_1_steps'] <= 12 for row in runs['staged']['rows'])
    assert len(document['prune_grid']) == 12  # 3 prune_after x 4 prune_above
    assert 'false prunes against staged' in result.stdout


def test_optimizer_comparison_runs_both_optimizers_on_the_same_cell() -> None:
    script = EXPERIMENTS / 'relax_optimizers.py'
    result = subprocess.run([sys.executable, str(script), '--offset', '0', '--every', '64', '--threads', '1'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()  # CHGNet prints a line of its own first
    fire, bfgs = (next(line for line in lines if line.strip().startswith(f'{name}:')) for name in ('FIRE', 'BFGS'))
    assert 'of 1 converged' in fire and '1 of 1 converged' in bfgs
    atoms, fire_steps, bfgs_steps, difference = lines[-1].split()
    assert int(atoms) == 5 and int(fire_steps) > 0 and int(bfgs_steps) > 0 and abs(float(difference)) < 1000


def test_relax_jobs_benchmark_relaxes_every_structure_in_each_layout() -> None:
    script = EXPERIMENTS / 'relax_jobs.py'
    result = subprocess.run([sys.executable, str(script), '--quick'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if ' jobs x ' in line]
    assert [line.split(':')[0] for line in lines] == ['1 jobs x 2 threads', '2 jobs x 1 threads']
    assert all('2 of 2 relaxed' in line for line in lines), lines


def test_template_steps_experiment_relaxes_both_realizations_of_each_protostructure(tmp_path) -> None:
    """Its quick path: three of Li-O's round-1 protostructures, each from its template and by PyXtal; the stages add
    up, the result is one of the recorded stages, and each rule's cost is the sum over the realizations it picks (all
    templates, or none)."""
    output = tmp_path / 'steps.json'
    result = subprocess.run([sys.executable, str(EXPERIMENTS / 'template_steps.py'), '--quick', '--output', str(output)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    system = json.loads(output.read_text())['systems']['Li-O']
    template, pyxtal = system['structures']['template'], system['structures']['pyxtal']
    assert len(template) == 3 and set(template) == set(pyxtal)
    assert all(row['steps'] == row['symmetric'] + row['free'] <= 10 for row in [*template.values(), *pyxtal.values()])
    assert all(row['template'].startswith('mp-') and row['distance'] >= 0 for row in template.values())
    assert all(row['e_above_hull'] in {round(stage['e_above_hull'], 4) for stage in row['stages']}
               for row in [*template.values(), *pyxtal.values()])
    rules = {str(rule['template_up_to']): rule for rule in system['summary']['rules']}
    assert rules['None']['atom_steps'] == sum(row['atoms'] * row['steps'] for row in template.values())
    assert rules['never']['atom_steps'] == sum(row['atoms'] * row['steps'] for row in pyxtal.values())
    # --compare pairs these three with the same protostructures of a committed full run (session 25's settings).
    before_file = EXPERIMENTS.parent / 'template_steps_same_minimum.json'
    result = subprocess.run([sys.executable, str(EXPERIMENTS / 'template_steps.py'), '--compare', str(before_file),
                             str(output)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    before = json.loads(before_file.read_text())['systems']['Li-O']['structures']
    for row in map(json.loads, result.stdout.splitlines()):
        after = system['structures'][row['method']]
        assert row['system'] == 'Li-O' and row['pairs'] == 3
        assert row['before']['atom_steps'] == sum(before[row['method']][k]['atoms'] * before[row['method']][k]['steps']
                                                  for k in after)
        assert row['after']['atom_steps'] == sum(r['atoms'] * r['steps'] for r in after.values())
        assert row['lower'] + row['higher'] <= 3


def test_template_choice_experiment_replays_every_rule_on_the_same_protostructures(tmp_path) -> None:
    """Its quick path: three of Ti-O's round-1 protostructures, each from up to two templates (scored and relaxed),
    by PyXtal, and by the workflow's K = 2 with both methods; the oracle never takes more steps than any rule choosing
    among the same templates, and K = 2 counts PyXtal's two pre-relaxations."""
    output = tmp_path / 'choice.json'
    command = [sys.executable, str(EXPERIMENTS / 'template_choice.py'), '--quick', '--output', str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    system = json.loads(output.read_text())['systems']['Ti-O']
    structures, rules = system['structures'], system['summary']['rules']
    assert len(structures) == 3 and system['summary']['protostructures'] >= 1
    first = [entry['templates'][0] for entry in structures.values() if entry['templates']]
    assert all(t['template'].startswith('mp-') and t['single_point'] < 0 for t in first)
    fewest = rules['fewest steps of 2 templates (oracle)']['steps_mean']
    assert rules['most similar template (K = 1)']['steps_mean'] >= fewest
    assert rules['lowest single point of 2 templates']['steps_mean'] >= fewest
    assert rules['PyXtal (K = 1)']['prerelax_steps_mean'] == 0 < rules['PyXtal, workflow K = 2']['prerelax_steps_mean']
    assert all(entry['pyxtal_k2']['steps'] >= entry['pyxtal_k2']['prerelax_steps'] > 0
               for entry in structures.values() if entry.get('pyxtal_k2'))
    # A protostructure with a template is realized once, so nothing is pre-relaxed to choose.
    assert all(entry['template_k2']['prerelax_steps'] == 0 for entry in structures.values()
               if entry['templates'] and entry.get('template_k2'))
