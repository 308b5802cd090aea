"""FIRE against BFGS on the symmetric stage: steps, convergence, CPU time and the energies they end at.

Every ``--every``-th of the committed generated cells (``benchmarks/data/relax_inputs.json``, smallest first, from
``--offset``) is relaxed alone in its own space group (``FixSymmetry``, fmax 0.1 eV/Å, at most 150 steps) once per
optimizer, in this process. Prints per optimizer the CPU seconds, steps and converged structures, then per structure
the steps of each and the energy of each later optimizer against the first (meV/atom).

Usage: ``python benchmarks/experiments/relax_optimizers.py [--optimizers FIRE BFGS] [--offset 4] [--every 6] [--threads 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/relax.py reads the committed inputs
from relax import load_inputs  # noqa: E402


def main() -> None:
    import torch

    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import (
        OPTIMIZERS, RelaxSettings, quiet_cell_filter_warnings, relax_structures, single_threaded_linear_algebra,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--optimizers', nargs='+', choices=OPTIMIZERS, default=['FIRE', 'BFGS'])
    parser.add_argument('--offset', type=int, default=4)
    parser.add_argument('--every', type=int, default=6)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    single_threaded_linear_algebra()
    quiet_cell_filter_warnings()
    inputs = sorted((entry['structure'] for entry in load_inputs()), key=len)
    structures = inputs[args.offset :: args.every]
    potential = load_potential('chgnet')
    runs = {}
    for optimizer in args.optimizers:
        settings = RelaxSettings(optimizer=optimizer, fmax=0.1, steps=150, fix_symmetry=True)
        start = time.process_time()
        runs[optimizer] = [relax_structures([structure], potential, settings)[0] for structure in structures]
        outcomes = runs[optimizer]
        print(f'{optimizer:>5}: {time.process_time() - start:6.0f} CPU s, {sum(o.steps for o in outcomes)} steps, '
              f'{sum(o.converged for o in outcomes)} of {len(outcomes)} converged', flush=True)
    first = args.optimizers[0]
    print(f'{"atoms":>5} ' + ' '.join(f'{name + " steps":>11}' for name in args.optimizers)
          + ''.join(f' {f"{name} - {first} meV/atom":>22}' for name in args.optimizers[1:]))
    for index, structure in enumerate(structures):
        energies = {name: runs[name][index].energy_per_atom for name in args.optimizers}
        differences = ''.join(
            f' {"-" if None in (energies[name], energies[first]) else f"{1000 * (energies[name] - energies[first]):+.0f}":>22}'
            for name in args.optimizers[1:]
        )
        print(f'{len(structure):>5} ' + ' '.join(f'{runs[name][index].steps:>11}' for name in args.optimizers) + differences)


if __name__ == '__main__':
    main()
