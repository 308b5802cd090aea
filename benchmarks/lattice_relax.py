"""Relaxation of PyXtal realizations in PyXtal's random lattice against real crystals' lattice shapes.

Held-out test-split crystals with no training prototype (where the workflow realizes by PyXtal) are realized from
their labels twice with the same seed: ``realize(..., scale_volume=True, real_shapes=False)`` (PyXtal's lattice
rescaled to the fitted volume, the behaviour before real shapes) and ``realize(..., scale_volume=True)`` (a training
crystal's lattice shape of the group at that volume). Both sets are relaxed freely by CHGNet (BFGS, fmax 0.1 eV/Å,
150 steps, one process), and per arm reported: relaxation steps, converged relaxations, relaxations that end in the
requested space group, and, paired, which ends lower in energy.

    python benchmarks/lattice_relax.py [--crystals 30] [--max-atoms 40] [--output benchmarks/templates_lattice_relax.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from templates import ROOT, held_out  # noqa: E402

ARMS = {'pyxtal, fitted volume': {'real_shapes': False}, 'pyxtal, real lattice shapes': {'real_shapes': True}}


def realized_pairs(count: int, max_atoms: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``count`` labels of held-out crystals without a training prototype that both arms realize in at most
    ``max_atoms`` atoms, with each arm's structure and realization seconds."""
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates()
    pairs = []
    for index, (_, label, _) in enumerate(held_out(10 * count, seed, None, None)):
        if library.templates_for(label, 1):
            continue
        found = {}
        for arm, options in ARMS.items():
            started = time.perf_counter()
            result = realize(label, seed=seed + index, attempts=20, scale_volume=True, **options)
            found[arm] = (result.structure, time.perf_counter() - started)
        if all(s is not None and len(s) <= max_atoms for s, _ in found.values()):
            pairs.append((label, found))
        if len(pairs) == count:
            break
    return pairs


def summary(labels: list[str], outcomes: list[Any]) -> dict[str, Any]:
    """Steps, convergence and the space group kept, over one arm's relaxations."""
    spacegroups = [int(label.split('_')[2]) for label in labels]
    steps = [o.steps for o in outcomes if o.ok]
    return {'relaxed': len(steps), 'converged': sum(o.ok and o.converged for o in outcomes),
            'median_steps': float(np.median(steps)), 'mean_steps': round(float(np.mean(steps)), 1),
            'kept_requested_spacegroup': sum(o.ok and o.spacegroup_final == g for o, g in zip(outcomes, spacegroups))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--crystals', type=int, default=30)
    parser.add_argument('--max-atoms', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', type=Path, default=ROOT / 'benchmarks' / 'templates_lattice_relax.json')
    arguments = parser.parse_args()
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import RelaxSettings, relax_structures

    pairs = realized_pairs(arguments.crystals, arguments.max_atoms, arguments.seed)
    labels = [label for label, _ in pairs]
    potential = load_potential('chgnet')
    settings = RelaxSettings(optimizer='BFGS', fmax=0.1, steps=150)
    document: dict[str, Any] = {'command': ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]]), 'protostructures': labels,
                                'settings': 'free relaxation, BFGS, fmax 0.1 eV/Å, 150 steps', 'arms': {}}
    energies = {}
    for arm in ARMS:
        started = time.perf_counter()
        outcomes = relax_structures([found[arm][0] for _, found in pairs], potential, settings)
        document['arms'][arm] = summary(labels, outcomes) | {
            'relax_seconds': round(time.perf_counter() - started, 1),
            'realize_seconds_per_crystal': round(float(np.mean([found[arm][1] for _, found in pairs])), 3)}
        energies[arm] = [o.energy_per_atom if o.ok else None for o in outcomes]
    both = [(old, new) for old, new in zip(*energies.values()) if old is not None and new is not None]
    document['paired'] = {'relaxed_by_both': len(both),
                          'real_shapes_lower_by_over_10_meV_per_atom': sum(new < old - 0.01 for old, new in both),
                          'real_shapes_higher_by_over_10_meV_per_atom': sum(new > old + 0.01 for old, new in both),
                          'median_energy_difference_eV_per_atom': round(float(np.median([n - o for o, n in both])), 4)}
    arguments.output.write_text(json.dumps(document, indent=1) + '\n')
    print(json.dumps({k: v for k, v in document.items() if k != 'protostructures'}, indent=1))


if __name__ == '__main__':
    main()
