"""How a relax job should use the cores it is given: lockstep batches, one process, or worker processes.

The same committed generated cells (``benchmarks/data/relax_inputs.json``) go through a fixed number of
FixSymmetry FIRE steps (fmax 0.01, so none stops early) six ways, one after the other in this process:

- ``lockstep T``: ``relax_structures`` (all structures in lockstep model batches), torch on T threads;
- ``one process T``: ``relax_all(workers=1)`` (one structure per model call), torch on T threads, one BLAS thread;
- ``workers W``: ``relax_all(workers=W)``, each worker with ``cores // W`` torch threads and one BLAS thread.

Each line: wall seconds, CPU seconds of the process and its workers, and CPU seconds per structure-step.

Usage: ``python benchmarks/experiments/relax_parallelism.py [--structures 8] [--steps 25] [--skip 20]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/relax.py reads the committed inputs
from relax import cpu_seconds, load_inputs  # noqa: E402


def main() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import RelaxSettings, available_cores, quiet_cell_filter_warnings, relax_all, relax_structures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--structures', type=int, default=8)
    parser.add_argument('--steps', type=int, default=25)
    parser.add_argument('--skip', type=int, default=20, help='start after the N smallest inputs (default 20)')
    args = parser.parse_args()
    quiet_cell_filter_warnings()
    structures = [entry['structure'] for entry in load_inputs()[args.skip : args.skip + args.structures]]
    potential = load_potential('chgnet')
    settings = RelaxSettings(fmax=0.01, steps=args.steps, fix_symmetry=True)
    cores = available_cores()
    runs = [('lockstep', 1), ('lockstep', cores), ('one process', 1), ('one process', cores), ('workers', cores)]
    print(f'{len(structures)} structures x {args.steps} steps on {cores} cores')
    for mode, count in runs:
        start, cpu = time.perf_counter(), cpu_seconds()
        if mode == 'workers':
            outcomes = relax_all(structures, potential, settings, workers=count).outcomes
        else:
            torch.set_num_threads(count)
            with threadpool_limits(limits=1, user_api='blas'):
                if mode == 'lockstep':
                    outcomes = relax_structures(structures, potential, settings)
                else:
                    outcomes = relax_all(structures, potential, settings, workers=1).outcomes
        wall, used = time.perf_counter() - start, cpu_seconds() - cpu
        steps = sum(outcome.steps for outcome in outcomes)
        print(f'{mode:>12} {count}: wall {wall:6.1f} s, CPU {used:6.1f} s, {used / steps:.3f} CPU s per structure-step',
              flush=True)


if __name__ == '__main__':
    main()
