"""BFGS's first Hessian guess (``RelaxSettings.bfgs_alpha``): steps and end points of the staged relaxation.

The same realized structures are relaxed once per value, in one process, with the staged protocol otherwise as it
is; what is compared is the optimizer's path to the same minimum (steps, CPU) and whether the end points move
(hits, paired energies). ``discovery.py``'s ``alpha=`` key measures the same at the outcome level with its costs.

    python benchmarks/bfgs_alpha.py --system Dy-In --samples 80 --realization template --alphas 70 35 20 10
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from discovery import Context, _distinct, _label, _realized, as_generator, scan_spacegroups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--system', default='Dy-In')
    parser.add_argument('--samples', type=int, default=80)
    parser.add_argument('--realization', choices=['template', 'pyxtal'], default='template',
                        help="How the model's samples become structures (discovery.py's real=).")
    parser.add_argument('--alphas', type=float, nargs='+', default=[70.0, 20.0], help='The first is the reference.')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', type=Path)
    parser.add_argument('--quick', action='store_true', help='A CI-size run: 4 samples, alphas 70 and 20.')
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.samples, arguments.alphas = 4, [70.0, 20.0]

    from aiida_wyckoffdiff.hull import MPHull, elemental_energies
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import STAGED, RelaxSettings, relax_all

    system = tuple(arguments.system.split('-'))
    context = Context(arguments.seed)
    candidates, _ = context.generate(as_generator('model:g=2,guided=e_above_hull'), system,
                                     scan_spacegroups(system, 'chemistry'), arguments.samples, arguments.seed)
    distinct = _distinct(candidates, [_label(c) for c in candidates])
    potential = load_potential('chgnet')
    elemental = elemental_energies(potential, sorted(system), RelaxSettings(fmax=0.1, steps=300))
    hull = MPHull(apply_mp2020=not potential.includes_mp2020, elemental=elemental)
    structures, _, _ = _realized(distinct, arguments.seed, potential, 1, 1, arguments.realization)
    rows, energies = [], {}
    for alpha in arguments.alphas:
        started = time.process_time()
        outcomes = relax_all(structures, potential, replace(STAGED, bfgs_alpha=alpha), workers=1, hull=hull).outcomes
        steps = np.array([o.steps if o.ok else np.nan for o in outcomes])
        energies[alpha] = np.array([o.e_above_hull if o.ok and o.e_above_hull is not None else np.nan
                                    for o in outcomes])
        rows.append({
            'alpha': alpha, 'structures': len(structures),
            'cpu_seconds_this_process': round(time.process_time() - started, 1),
            'steps_median': float(np.nanmedian(steps)), 'steps_mean': round(float(np.nanmean(steps)), 1),
            'steps_total': int(np.nansum(steps)), 'hits': int(np.sum(energies[alpha] <= 0.1)),
            'median_e_above_hull': round(float(np.nanmedian(energies[alpha])), 3),
            'pruned': sum(o.pruned is not None for o in outcomes),
        })
        if alpha != arguments.alphas[0]:
            difference = energies[alpha] - energies[arguments.alphas[0]]
            rows[-1] |= {'ended_lower': int(np.sum(difference < -0.005)),
                         'ended_higher': int(np.sum(difference > 0.005))}
        print(json.dumps(rows[-1]), flush=True)
    if arguments.output:
        document = {'command': f'bfgs_alpha.py {vars(arguments)}', 'system': arguments.system, 'rows': rows}
        arguments.output.write_text(json.dumps(document, indent=1) + '\n')


if __name__ == '__main__':
    main()
