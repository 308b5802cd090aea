"""Which template to relax, and what the workflow's K = 2 really costs, on the same protostructures (issue 26).

The protostructures are those of ``template_steps.py`` (round 1 of ``benchmarks/rounds12_*.json``, 96 per system).
Each is realized from up to ``--templates`` of its most similar training crystals, every one scored by a single-point
energy and relaxed by the staged protocol (``relax.STAGED``), so that any rule choosing among them can be replayed:
the most similar (the workflow at K = 1), the lowest single-point energy among the first k, and the fewest steps (an
oracle, no rule). Beside them, on the same protostructures: PyXtal at K = 1 (seed = position, as ``template_steps``),
and the workflow's own K = 2 for both methods (``candidates.choose_realizations``: two realizations, both pre-relaxed
under symmetry for up to 30 steps, the lower relaxed), whose steps count the two pre-relaxations too. The committed
numbers were made at commit 2162d76; since then a protostructure with a template is realized once (this measurement's
finding), so the template arm of K = 2 now repeats the most similar template.

Printed per system, over the protostructures that have a template: mean and median steps per protostructure, atom-steps,
and distinct relaxed structures (by label) within 0.1 eV/atom of the hull, all and those keeping the requested crystal
system; and each rule's steps against PyXtal's at the same K.

Usage: ``python benchmarks/experiments/template_choice.py [--systems Li-O Er-Ni] [--templates 3] [--output FILE]``
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from template_steps import _outcome, experiment_parser, potential_and_hull, round_one_labels, system_kept  # noqa: E402


def _rows(outcomes: list[Any], labels: list[str], extra_steps: list[int] | None = None) -> list[dict[str, Any] | None]:
    """Per outcome the numbers the rules need (``None`` where it failed); ``extra_steps`` (the pre-relaxations) are
    added to its steps."""
    from aiida_wyckoffdiff.symmetry import structure_label

    rows: list[dict[str, Any] | None] = []
    for index, (label, outcome) in enumerate(zip(labels, outcomes, strict=True)):
        if not outcome.ok or outcome.e_above_hull is None:
            rows.append(None)
            continue
        try:
            relaxed = structure_label(outcome.structure)
        except Exception:  # noqa: BLE001 - a collapsed cell has no label; it still has an energy
            relaxed = f'{label}#{index}'
        prerelax = extra_steps[index] if extra_steps else 0
        rows.append({'steps': outcome.steps + prerelax, 'prerelax_steps': prerelax, 'atoms': len(outcome.structure),
                     'e_above_hull': round(outcome.e_above_hull, 4), 'relaxed': relaxed,
                     'system_kept': system_kept(label, relaxed)})
    return rows


def relax_system(labels: list[str], count: int, steps: int, potential: Any, hull: Any) -> dict[str, Any]:
    """Every template candidate (single-point energy and staged relaxation), PyXtal at K = 1, and the workflow's
    K = 2 with templates and with PyXtal, per protostructure label."""
    from aiida_wyckoffdiff.candidates import choose_realizations
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.relax import STAGED, evaluate_structures, relax_all
    from aiida_wyckoffdiff.symmetry import Protostructure
    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates()
    settings = replace(STAGED, steps=steps)
    protostructures = [Protostructure.from_label(label) for label in labels]
    result: dict[str, Any] = {label: {'templates': []} for label in labels}

    def relax(structures: list[Any], names: list[str], what: str, extra: list[int] | None = None) -> list[Any]:
        started = time.process_time()
        outcomes = relax_all(structures, potential, settings, workers=1, hull=hull).outcomes
        print(f'  {what}: {len(structures)} relaxed in {time.process_time() - started:.0f} CPU s', flush=True)
        return _rows(outcomes, names, extra)

    structures, owners = [], []
    for position, protostructure in enumerate(protostructures):
        for template in library.templates_for(protostructure, count):
            realized = realize(protostructure, seed=position, template=template, scale_volume=True)
            if realized.structure is not None:
                structures.append(realized.structure)
                owners.append(protostructure.label)
                result[protostructure.label]['templates'].append(
                    {'template': template.material_id, 'distance': template.distance_to(protostructure)})
    energies = evaluate_structures(structures, potential)
    slots = {label: iter(entry['templates']) for label, entry in result.items()}
    for label, energy, row in zip(owners, energies, relax(structures, owners, f'templates (up to {count} each)')):
        next(slots[label]).update(single_point=None if energy is None else round(energy, 5), relaxed=row)

    structures, names = [], []
    for position, protostructure in enumerate(protostructures):
        realized = realize(protostructure, seed=position)
        if realized.structure is not None:
            structures.append(realized.structure)
            names.append(protostructure.label)
    for label, row in zip(names, relax(structures, names, 'PyXtal, K = 1')):
        result[label]['pyxtal'] = row

    for method in ('template', 'pyxtal'):
        started = time.process_time()
        choices = choose_realizations(protostructures, potential, candidates=2, seed=0,
                                      templates=library if method == 'template' else None)
        print(f'  {method}, K = 2: pre-relaxed in {time.process_time() - started:.0f} CPU s', flush=True)
        chosen = [(c.protostructure.label, c.structure, sum(c.steps)) for c in choices if c.structure is not None]
        rows = relax([s for _, s, _ in chosen], [label for label, _, _ in chosen], f'{method}, K = 2',
                     [extra for _, _, extra in chosen])
        for (label, _, _), row in zip(chosen, rows):
            result[label][f'{method}_k2'] = row
    return result


def summarize(result: dict[str, Any], count: int) -> dict[str, Any]:
    """Each rule's steps, atom-steps and hits over the protostructures with a relaxed first template and every arm
    relaxed, and its steps against PyXtal's at the same K (ratio of means and median of per-protostructure ratios)."""
    pairs = [label for label, entry in result.items()
             if entry['templates'] and entry['templates'][0].get('relaxed')
             and all(entry.get(key) for key in ('pyxtal', 'template_k2', 'pyxtal_k2'))]

    def lowest_single_point(label: str, k: int) -> dict[str, Any]:
        scored = [t for t in result[label]['templates'][:k] if t.get('relaxed') and t['single_point'] is not None]
        return min(scored, key=lambda t: t['single_point'])['relaxed'] if scored else result[label]['pyxtal']

    def fewest_steps(label: str) -> dict[str, Any]:
        return min((t['relaxed'] for t in result[label]['templates'] if t.get('relaxed')), key=lambda r: r['steps'])

    rules: dict[str, list[dict[str, Any]]] = {'most similar template (K = 1)': [result[k]['templates'][0]['relaxed']
                                                                                for k in pairs]}
    for k in range(2, count + 1):
        rules[f'lowest single point of {k} templates'] = [lowest_single_point(label, k) for label in pairs]
    rules[f'fewest steps of {count} templates (oracle)'] = [fewest_steps(label) for label in pairs]
    rules['PyXtal (K = 1)'] = [result[k]['pyxtal'] for k in pairs]
    rules['templates, workflow K = 2'] = [result[k]['template_k2'] for k in pairs]
    rules['PyXtal, workflow K = 2'] = [result[k]['pyxtal_k2'] for k in pairs]

    def against(rows: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, float]:
        steps = np.array([r['steps'] for r in rows], dtype=float)
        base = np.array([r['steps'] for r in baseline], dtype=float)
        return {'ratio_of_means': round(float(steps.mean() / base.mean()), 3),
                'median_ratio': round(float(np.median(steps / np.maximum(base, 1))), 3)}

    summary: dict[str, Any] = {'protostructures': len(pairs), 'rules': {}}
    for name, rows in rules.items():
        steps = [r['steps'] for r in rows]
        baseline = rules['PyXtal, workflow K = 2' if 'K = 2' in name else 'PyXtal (K = 1)']
        summary['rules'][name] = {'steps_mean': round(float(np.mean(steps)), 1),
                                  'steps_median': float(np.median(steps)),
                                  'prerelax_steps_mean': round(float(np.mean([r['prerelax_steps'] for r in rows])), 1),
                                  **_outcome(rows), 'against_pyxtal': against(rows, baseline)}
    return summary


def main() -> None:
    parser = experiment_parser(__doc__.splitlines()[0], 'Ti-O')
    parser.add_argument('--templates', type=int, default=3, help='Templates realized and relaxed per protostructure.')
    args = parser.parse_args()
    if args.quick:
        args.systems, args.limit, args.steps, args.templates = ['Ti-O'], 3, 5, 2
    potential, hull = potential_and_hull()
    document: dict[str, Any] = {'settings': vars(args) | {'output': str(args.output)}, 'systems': {}}
    for system in args.systems:
        print(system, flush=True)
        result = relax_system(round_one_labels(system, args.limit), args.templates, args.steps, potential, hull)
        summary = summarize(result, args.templates)
        document['systems'][system] = {'summary': summary, 'structures': result}
        print(f"  over {summary['protostructures']} protostructures with a template")
        for name, row in summary['rules'].items():
            print(f'  {name:42s} {row}')
        if args.output:
            args.output.write_text(json.dumps(document, indent=1))


if __name__ == '__main__':
    main()
