"""Today's relaxation settings against the staged, pruned protocol, on the committed input set, in one run.

Inputs: ``benchmarks/data/relax_inputs.json`` (64 realized Li-O and Ti-O structures from the shipped model over the
top 20 space groups; ``benchmarks/experiments/relax_inputs.py`` made it). The same structures go through

- ``today``: the settings of the main job until the staged protocol: free relaxation, FIRE to fmax 0.1 eV/Å, 150
  steps, all structures with the elemental ground states in lockstep batches in one process (torch on all cores),
  forces and stress from CHGNet's own ``predict_structure`` (``CHGNetAsShipped``);
- ``staged``: ``relax.STAGED`` with pruning off, one structure per model call on ``--workers`` processes;
- ``pruned``: ``relax.STAGED`` as it is (the default).

Each line gives wall time, CPU time of the process and its workers (core-seconds), peak RSS, structures finished
per minute and per core-minute, hits (e_above_hull <= 0.1 eV/atom against each run's own elemental references),
hits lost against ``today``, energies of the structures both runs converge, and how many kept the requested space
group and crystal system. Then the false-prune rate: of the structures ``pruned`` stopped, how many ended within
0.1 eV/atom in ``staged`` or ``today``; and, from the ``staged`` trajectories, what other prune settings would have
stopped and how many of those wrongly.

Usage: ``python benchmarks/relax.py [--quick] [--workers N] [--limit N] [--runs today staged pruned] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

INPUTS = Path(__file__).parent / 'data' / 'relax_inputs.json'
HIT = 0.1
"""eV/atom: what counts as a hit (within the potential's error of the hull, docs/hull.md)."""
NEAR = 0.2
"""eV/atom: the structures whose crystal system the issue asks to keep."""
RUNS = ('today', 'staged', 'pruned')
PRUNE_GRID = {'prune_after': (10, 20, 30), 'prune_above': (0.5, 1.0, 1.5, 2.0)}


def chgnet_as_shipped() -> Any:
    """CHGNet with forces and stress from its own ``predict_structure`` (two backward passes that keep a graph of the
    gradients, for training), as every relaxation of this package used before; the package's ``CHGNetPotential``
    takes one pass without that graph."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_wyckoffdiff.potentials import CHGNetPotential, Evaluation

    class CHGNetAsShipped(CHGNetPotential):
        def __init__(self) -> None:
            super().__init__()
            self.model.requires_grad_(True)

        def evaluate(self, atoms_list: list) -> list:
            from ase.units import GPa

            structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in atoms_list]
            predictions = self.model.predict_structure(structures, task='efs', batch_size=len(structures))
            predictions = [predictions] if isinstance(predictions, dict) else predictions
            return [Evaluation(float(p['e']) * len(s), p['f'], p['s'] * GPa) for p, s in zip(predictions, structures)]

    return CHGNetAsShipped()


def load_inputs(limit: int | None = None) -> list[dict[str, Any]]:
    """The committed structures as ``{chemsys, label, structure}``, smallest first when ``limit`` cuts them."""
    from pymatgen.core import Lattice, Structure

    entries = json.loads(INPUTS.read_text())['structures']
    for entry in entries:
        cell = entry['structure']
        entry['structure'] = Structure(Lattice(cell['lattice']), cell['species'], cell['frac_coords'])
    if limit is not None:
        entries = sorted(entries, key=lambda entry: len(entry['structure']))[:limit]
    return entries


def cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the worker processes), in core-seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_maxrss / 1024, children.ru_maxrss / 1024


def run_today(structures: list, potential: Any, settings: Any) -> tuple[list, dict[str, float]]:
    """The old job: generated structures and elemental ground states relaxed together in lockstep batches."""
    from aiida_wyckoffdiff.hull import elemental_energies_from
    from aiida_wyckoffdiff.references import elemental_references
    from aiida_wyckoffdiff.relax import relax_structures

    references = elemental_references(sorted({e.symbol for s in structures for e in s.composition}))
    outcomes = relax_structures(structures + [r.structure for r in references], potential, settings)
    elemental = elemental_energies_from(references, outcomes[len(structures) :], potential.name)
    return outcomes[: len(structures)], elemental


def summarize(name: str, outcomes: list, elemental: dict, entries: list, wall: float, cpu: float) -> dict[str, Any]:
    from aiida_wyckoffdiff.hull import HullDistance
    from aiida_wyckoffdiff.symmetry import Protostructure, spacegroup_info

    distance = HullDistance(elemental, apply_mp2020=False)  # CHGNet energies already carry MP2020
    rows = []
    for outcome, entry in zip(outcomes, entries, strict=True):
        requested = Protostructure.from_label(entry['label']).spacegroup
        e_hull = distance(outcome.structure, outcome.energy) if outcome.energy is not None else None
        found = outcome.spacegroup_final
        rows.append({
            'ok': outcome.ok,
            'converged': outcome.converged,
            'pruned': outcome.pruned is not None,
            'steps': outcome.steps,
            'energy_per_atom': outcome.energy_per_atom,
            'e_above_hull': e_hull,
            'spacegroup_kept': found == requested,
            'crystal_system_kept': found is not None
            and spacegroup_info(found).crystal_system == spacegroup_info(requested).crystal_system,
            'kept_spacegroup_free_stage': outcome.kept_spacegroup,
            'stages': [{key: stage[key] for key in ('fix_symmetry', 'steps', 'energy_per_atom', 'spacegroup')}
                       for stage in outcome.stages],
        })
    near = [r for r in rows if r['e_above_hull'] is not None and r['e_above_hull'] <= NEAR]
    return {
        'name': name,
        'wall_s': wall,
        'cpu_s': cpu,
        'finished': sum(r['ok'] for r in rows),
        'converged': sum(r['converged'] for r in rows),
        'pruned': sum(r['pruned'] for r in rows),
        'steps': sum(r['steps'] for r in rows),
        'hits': [i for i, r in enumerate(rows) if r['e_above_hull'] is not None and r['e_above_hull'] <= HIT],
        'near': len(near),
        'near_crystal_system_kept': sum(r['crystal_system_kept'] for r in near),
        'spacegroup_kept': sum(r['spacegroup_kept'] for r in rows),
        'crystal_system_kept': sum(r['crystal_system_kept'] for r in rows),
        'elemental': elemental,
        'rows': rows,
    }


def prune_grid(trajectories: list[Path], staged: dict, elemental: dict) -> list[dict[str, Any]]:
    """What each prune setting would have stopped in the unpruned ``staged`` run, read back from its trajectories.

    Exact, not a model: a pruned relaxation is the unpruned one cut at ``prune_after`` steps.
    """
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    from aiida_wyckoffdiff.hull import HullDistance

    distance = HullDistance(elemental, apply_mp2020=False)
    at_step = {}
    for index, path in enumerate(trajectories):
        frames = read(path, index=':') if path.is_file() else []
        first_stage = staged['rows'][index]['stage_1_steps']
        at_step[index] = {
            step: distance(AseAtomsAdaptor.get_structure(frames[step]), frames[step].get_potential_energy())
            for step in PRUNE_GRID['prune_after']
            if step < first_stage  # a structure that converged earlier is never pruned
        }
    grid = []
    for after in PRUNE_GRID['prune_after']:
        for above in PRUNE_GRID['prune_above']:
            stopped = [i for i, d in at_step.items() if after in d and d[after] is not None and d[after] > above]
            wrong = [i for i in stopped if (e := staged['rows'][i]['e_above_hull']) is not None and e <= HIT]
            saved = sum(staged['rows'][i]['steps'] - after for i in stopped)
            grid.append({'prune_after': after, 'prune_above': above, 'pruned': len(stopped), 'false': len(wrong),
                         'steps_saved': saved, 'steps_total': staged['steps']})
    return grid


def main() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from aiida_wyckoffdiff.hull import MPHull
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import (
        STAGED, RelaxSettings, available_cores, default_workers, quiet_cell_filter_warnings, relax_all,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='3 smallest structures, 12 steps, prune after 4: a smoke test')
    parser.add_argument('--limit', type=int, help='only the N smallest structures')
    parser.add_argument('--workers', type=int, default=default_workers(), help='worker processes of the new protocol')
    parser.add_argument('--json', type=Path, help='write every number, per structure too, to this file')
    parser.add_argument('--runs', nargs='+', choices=RUNS, default=list(RUNS), help='which runs (default: all three)')
    args = parser.parse_args()
    quiet_cell_filter_warnings()
    today_settings = RelaxSettings(optimizer='FIRE', fmax=0.1, steps=150)
    pruned_settings = STAGED
    limit = args.limit
    if args.quick:
        limit = limit or 3
        today_settings = replace(today_settings, steps=12)
        pruned_settings = replace(STAGED, steps=12, prune_after=4)
    entries = load_inputs(limit)
    structures = [entry['structure'] for entry in entries]
    staged_settings = replace(pruned_settings, prune_above=None)
    potential = load_potential('chgnet')
    print(f'load average at start: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
    torch.set_num_threads(available_cores())  # what the one-process job got: torch's default on this machine
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        trajectories = [Path(workdir) / f'{index}.traj' for index in range(len(structures))]
        grid = []
        print_header()
        for name in [run for run in RUNS if run in args.runs]:
            start, cpu = time.perf_counter(), cpu_seconds()
            if name == 'today':
                outcomes, elemental = run_today(structures, chgnet_as_shipped(), today_settings)
            else:
                settings = staged_settings if name == 'staged' else pruned_settings
                with threadpool_limits(limits=1, user_api='blas'):  # as ``wyckoffdiff relax`` does, for one worker
                    run = relax_all(structures, potential, settings, workers=args.workers,
                                    hull=MPHull(apply_mp2020=not potential.includes_mp2020),
                                    trajectories=trajectories if name == 'staged' else None)
                outcomes, elemental = run.outcomes, run.elemental
            results[name] = summarize(name, outcomes, elemental, entries, time.perf_counter() - start, cpu_seconds() - cpu)
            results[name]['peak_rss_mib'] = peak_rss_mib()
            if name == 'staged':
                for row, outcome in zip(results[name]['rows'], outcomes):
                    row['stage_1_steps'] = outcome.stages[0]['steps'] if outcome.stages else 0
                    row['stage_1_e_above_hull'] = outcome.stages[0]['e_above_hull'] if outcome.stages else None
                grid = prune_grid(trajectories, results[name], elemental)
            results[name]['load_average'] = os.getloadavg()
            print_run(results[name], results.get('today'))
    print_prunes(results, grid)
    if args.json:
        args.json.write_text(json.dumps({'results': results, 'prune_grid': grid, 'workers': args.workers}, indent=1))


def print_run(result: dict[str, Any], today: dict[str, Any] | None) -> None:
    """One line per run; energies and hits against ``today`` where that ran first."""
    lost = sorted(set(today['hits']) - set(result['hits'])) if today else []
    energies = ''
    if today and result is not today:
        both = [(new['energy_per_atom'] - old['energy_per_atom']) * 1000
                for new, old in zip(result['rows'], today['rows']) if new['converged'] and old['converged']]
        if both:
            both.sort()
            energies = f'{len(both)}: {both[len(both) // 2]:+.1f} {both[-1]:+.1f}'
    print(f'{result["name"]:<8} {result["wall_s"]:>7.0f} {result["cpu_s"]:>7.0f} {result["finished"]:>8} '
          f'{60 * result["finished"] / result["wall_s"]:>6.2f} {60 * result["finished"] / result["cpu_s"]:>9.2f} '
          f'{result["converged"]:>5} {result["pruned"]:>6} {len(result["hits"]):>5} {len(lost):>5} '
          f'{result["spacegroup_kept"]:>7} {result["crystal_system_kept"]:>7} '
          f'{result["near_crystal_system_kept"]:>5}/{result["near"]:<6} {energies:>36}', flush=True)


def print_header() -> None:
    print(f'{"run":<8} {"wall s":>7} {"core s":>7} {"finished":>8} {"/min":>6} {"/core-min":>9} {"conv":>5} '
          f'{"pruned":>6} {"hits":>5} {"lost":>5} {"sg kept":>7} {"cs kept":>7} {"cs kept<=0.2":>12} '
          f'{"dE both conv (meV/atom): median max":>36}')


def print_prunes(results: dict[str, Any], grid: list[dict[str, Any]]) -> None:
    if not {'today', 'staged', 'pruned'} <= set(results):
        return
    staged = results['staged']['rows']
    first = [staged[i]['stage_1_e_above_hull'] for i in results['today']['hits']]
    print('distance to the hull after the symmetric stage of today\'s hits (eV/atom; free_within must cover them): '
          + ', '.join('-' if d is None else f'{d:.3f}' for d in first))
    pruned = [i for i, row in enumerate(results['pruned']['rows']) if row['pruned']]
    for reference in ('staged', 'today'):
        rows = results[reference]['rows']
        wrong = [i for i in pruned if rows[i]['e_above_hull'] is not None and rows[i]['e_above_hull'] <= HIT]
        print(f'false prunes against {reference}: {len(wrong)} of {len(pruned)} pruned ended within {HIT} eV/atom')
    print('prune_after prune_above pruned false steps_saved/steps')
    for line in grid:
        print(f'{line["prune_after"]:>11} {line["prune_above"]:>11} {line["pruned"]:>6} {line["false"]:>5} '
              f'{line["steps_saved"]:>6}/{line["steps_total"]}')


if __name__ == '__main__':
    main()
