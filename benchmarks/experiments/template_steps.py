"""Where template and PyXtal relaxation steps go, on the same protostructures, and whether far templates are worth it.

The protostructures are the round-1 samples of a committed rounds result (``benchmarks/rounds12_*.json``: the shipped
model at the sampling defaults, target 0, 96 per system). Each is realized twice, from its most similar training crystal
(``templates.substitute`` via ``realize(..., template=...)``, as the workflow does at K = 1) and by PyXtal (seed = its
position), and each realization is relaxed by the staged protocol (``relax.STAGED``) against the MP hull. Printed per
system: the steps of each method split into the symmetric and the free stage; the same by the template's chemical
distance (summed Mendeleev-number differences of the elements that replace each other, ``Template.distance_to``);
and, from these paired relaxations, what a rule "template only up to distance D, PyXtal beyond" would have cost and
found (atom-steps; distinct relaxed structures, by label, within 0.1 eV/atom of the hull, and those of them that kept
the requested crystal system).

Usage: ``python benchmarks/experiments/template_steps.py [--systems Li-O Er-Ni] [--limit 96] [--output FILE]``;
``--compare BEFORE AFTER...`` relaxes nothing and compares two such result files (relaxation settings before and
after) pair by pair: steps, atom-steps, near-hull structures and how many end points moved by more than 5 meV/atom.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from aiida_wyckoffdiff.spacegroups import ALLOCATION_WINDOW as HIT

BENCHMARKS = Path(__file__).parents[1]
RESULTS = {'Er-Ni': 'rounds12_er_ni', 'Cu-Nb-O': 'rounds12_cu_nb_o', 'Li-O': 'rounds12_li_o', 'Ti-O': 'rounds12_ti_o'}
DISTANCE_BINS = ((0, 10), (11, 30), (31, 60), (61, 10_000))
CUTOFFS = (10, 30, 60, None)
"""The rules compared: template up to this chemical distance (``None``: always, the workflow's rule), PyXtal beyond."""


def round_one_labels(system: str, limit: int) -> list[str]:
    """The protostructures round 1 relaxed, in the order they were drawn."""
    document = json.loads((BENCHMARKS / f'{RESULTS[system]}.json').read_text())
    first = next(arm for arm in document['systems'][system]['arms'] if arm['round'] == 1)
    return list(first['e_above_hull_by_request'])[:limit]


def relax_both(
    labels: list[str], steps: int, potential: Any, hull: Any, cell_stiffness: float | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method, per label: steps per stage, e_above_hull, the relaxed label and whether it kept the requested
    crystal system, atoms, the template's material id and chemical distance, and each stage's space group and
    e_above_hull. ``cell_stiffness``: the staged protocol's own where ``None``."""
    from dataclasses import replace

    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.relax import STAGED, relax_all
    from aiida_wyckoffdiff.symmetry import Protostructure, structure_label
    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates()
    settings = replace(STAGED, steps=steps)
    if cell_stiffness is not None:  # 0 too, which RelaxSettings refuses, rather than the default taken silently
        settings = replace(settings, cell_stiffness=cell_stiffness)
    protostructures = {label: Protostructure.from_label(label) for label in labels}
    templates = {label: library.templates_for(p, 1) for label, p in protostructures.items()}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for method in ('template', 'pyxtal'):
        structures, names = [], []
        for position, (label, protostructure) in enumerate(protostructures.items()):
            own = templates[label] if method == 'template' else []
            realized = realize(protostructure, seed=position, template=own[0] if own else None,
                               scale_volume=method == 'template')
            if realized.structure is not None:
                structures.append(realized.structure)
                names.append(label)
        started = time.process_time()
        run = relax_all(structures, potential, settings, workers=1, hull=hull)
        print(f'  {method}: {len(structures)} relaxed in {time.process_time() - started:.0f} CPU s', flush=True)
        rows = {}
        for label, outcome in zip(names, run.outcomes, strict=True):
            if not outcome.ok or outcome.e_above_hull is None:
                continue
            stages = [stage['steps'] for stage in outcome.stages]
            try:
                relaxed = structure_label(outcome.structure)
            except Exception:  # noqa: BLE001 - a collapsed cell has no label; it still has an energy
                relaxed = f'{label}#{method}'
            rows[label] = {
                'symmetric': stages[0], 'free': sum(stages[1:]), 'steps': outcome.steps,
                'e_above_hull': round(outcome.e_above_hull, 4), 'atoms': len(outcome.structure), 'relaxed': relaxed,
                'system_kept': system_kept(label, relaxed),
                'template': templates[label][0].material_id if templates[label] else None,
                'distance': templates[label][0].distance_to(protostructures[label]) if templates[label] else None,
                'stages': [{key: stage[key] for key in ('spacegroup', 'e_above_hull')} for stage in outcome.stages],
            }
        results[method] = rows
    return results


def system_kept(requested: str, relaxed: str) -> bool:
    """Whether the relaxed structure's label has the requested label's crystal system, as ``discovery.py`` counts it
    (a collapsed cell, without a label, has not)."""
    from aiida_wyckoffdiff.symmetry import Protostructure

    if '#' in relaxed:
        return False
    systems = {Protostructure.from_label(label).info.crystal_system for label in (requested, relaxed)}
    return len(systems) == 1


def summarize(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Paired means and medians of the steps, the same per distance bin, and the cutoff rules' cost and finds."""
    template, pyxtal = results['template'], results['pyxtal']
    pairs = [label for label in template if label in pyxtal and template[label]['distance'] is not None]

    def steps(method: dict[str, dict[str, Any]], chosen: list[str]) -> dict[str, float]:
        total = np.array([method[label]['steps'] for label in chosen], dtype=float)
        return {'pairs': len(chosen), 'median': float(np.median(total)), 'mean': round(float(total.mean()), 1),
                'symmetric_mean': round(float(np.mean([method[label]['symmetric'] for label in chosen])), 1),
                'free_mean': round(float(np.mean([method[label]['free'] for label in chosen])), 1)}

    summary: dict[str, Any] = {'all': {'template': steps(template, pairs), 'pyxtal': steps(pyxtal, pairs)}, 'bins': []}
    for low, high in DISTANCE_BINS:
        chosen = [label for label in pairs if low <= template[label]['distance'] <= high]
        if chosen:
            summary['bins'].append({'distance': [low, high], 'template': steps(template, chosen),
                                    'pyxtal': steps(pyxtal, chosen),
                                    'hits': [sum(template[k]['e_above_hull'] <= HIT for k in chosen),
                                             sum(pyxtal[k]['e_above_hull'] <= HIT for k in chosen)]})
    summary['rules'] = []
    for cutoff in CUTOFFS:
        picked = [template[k] if cutoff is None or template[k]['distance'] <= cutoff else pyxtal[k] for k in pairs]
        summary['rules'].append({'template_up_to': cutoff, **_outcome(picked)})
    summary['rules'].append({'template_up_to': 'never', **_outcome([pyxtal[k] for k in pairs])})
    return summary


def _outcome(picked: list[dict[str, Any]]) -> dict[str, int]:
    """Atom-steps spent, and the distinct relaxed structures (by label) within :data:`HIT` of the hull: all of them
    and those whose relaxation kept the requested crystal system."""
    hits = {row['relaxed']: row for row in picked if row['e_above_hull'] <= HIT}
    return {'atom_steps': int(sum(row['atoms'] * row['steps'] for row in picked)), 'hits': len(hits),
            'hits_keeping_crystal_system': sum(row['system_kept'] for row in hits.values())}


MOVED = 0.005
"""eV/atom: an end point that moved by more than this between two runs counts as lower or higher."""


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per system and method, over the protostructures both runs relaxed: mean and median steps, atom-steps, distinct
    near-hull structures (and those keeping their crystal system), and end points that moved lower or higher."""
    rows = []
    for system, document in after.items():
        for method, relaxed in document['structures'].items():
            old = before[system]['structures'][method]
            pairs = [label for label in relaxed if label in old]
            moved = np.array([relaxed[k]['e_above_hull'] - old[k]['e_above_hull'] for k in pairs])
            row: dict[str, Any] = {'system': system, 'method': method, 'pairs': len(pairs),
                                   'lower': int((moved < -MOVED).sum()), 'higher': int((moved > MOVED).sum())}
            for name, run in (('before', old), ('after', relaxed)):
                steps = [run[k]['steps'] for k in pairs]
                row[name] = {'steps_mean': round(float(np.mean(steps)), 1), 'steps_median': float(np.median(steps)),
                             **_outcome([run[k] for k in pairs])}
            rows.append(row)
    return rows


def experiment_parser(description: str, quick_system: str) -> argparse.ArgumentParser:
    """The arguments the template experiments share: systems, how many protostructures, steps, ``--quick``, output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--systems', nargs='+', choices=sorted(RESULTS), default=['Li-O', 'Er-Ni'])
    parser.add_argument('--limit', type=int, default=96, help='Round-1 protostructures per system, in drawn order.')
    parser.add_argument('--steps', type=int, default=150, help='At most this many steps per stage.')
    parser.add_argument('--quick', action='store_true',
                        help=f'A CI-size run: {quick_system}, 3 protostructures, 5 steps.')
    parser.add_argument('--output', type=Path, help='Write every number, per structure too, to this JSON file.')
    return parser


def potential_and_hull() -> tuple[Any, Any]:
    """CHGNet on one BLAS thread, and the MP hull its relaxations are measured against."""
    from aiida_wyckoffdiff.hull import MPHull
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import quiet_cell_filter_warnings, single_threaded_linear_algebra

    single_threaded_linear_algebra()
    quiet_cell_filter_warnings()
    potential = load_potential('chgnet')
    return potential, MPHull(apply_mp2020=not potential.includes_mp2020)


def main() -> None:
    parser = experiment_parser(__doc__.splitlines()[0], 'Li-O')
    parser.add_argument('--compare', nargs='+', type=Path, metavar='FILE',
                        help='BEFORE AFTER...: compare result files of two runs instead of relaxing.')
    parser.add_argument('--cell-stiffness', type=float, metavar='EV_PER_A3',
                        help="The cell's stiffness guess [default: the staged protocol's].")
    args = parser.parse_args()
    if args.compare:
        if len(args.compare) < 2:
            parser.error('--compare needs a BEFORE file and at least one AFTER file')
        before, *after = (json.loads(path.read_text())['systems'] for path in args.compare)
        for row in compare(before, {system: doc for document in after for system, doc in document.items()}):
            print(json.dumps(row))
        return
    if args.quick:
        args.systems, args.limit, args.steps = ['Li-O'], 3, 5
    potential, hull = potential_and_hull()
    document: dict[str, Any] = {'settings': vars(args) | {'output': str(args.output)}, 'systems': {}}
    for system in args.systems:
        print(system, flush=True)
        results = relax_both(round_one_labels(system, args.limit), args.steps, potential, hull, args.cell_stiffness)
        summary = summarize(results)
        document['systems'][system] = {'summary': summary, 'structures': results}
        for method, row in summary['all'].items():
            print(f'  {method:8s} {row}')
        for row in summary['bins']:
            print(f"  distance {row['distance']}: template {row['template']['mean']} against PyXtal "
                  f"{row['pyxtal']['mean']} steps (mean) over {row['template']['pairs']}, hits {row['hits']}")
        for row in summary['rules']:
            print(f'  rule {row}')
    if args.output:
        args.output.write_text(json.dumps(document, indent=1))


if __name__ == '__main__':
    main()
