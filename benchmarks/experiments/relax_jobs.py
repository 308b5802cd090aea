"""How many relax jobs a machine should run at once: the same structures split over N concurrent `wyckoffdiff relax`.

The phase-diagram workflow splits a scan's structures into relax jobs of ``structures_per_job`` and runs several at
once; on the direct scheduler they share the machine's cores. This runs the committed generated cells
(``benchmarks/data/relax_inputs.json``) through the relax command in several layouts, one after the other: ``NxT``
is N jobs at once, each on T cores (``--cores T``, as the workflow gives each job its share), the structures dealt
round-robin between the jobs.
Every structure takes a fixed number of FixSymmetry BFGS steps (fmax 0.01, so none stops early) against fixed
elemental energies, so every layout does the same work.

Each line: wall seconds, CPU seconds of all the jobs, and the wall time relative to the first layout.

Usage: ``python benchmarks/experiments/relax_jobs.py [--quick] [--structures 12] [--steps 30] [--skip 20] [--layouts 1x2 6x2 2x1]``
(``--quick``: 2 structures, 2 steps, layouts 1x2 and 2x1: that it runs, not how fast).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/relax.py reads the committed inputs
from relax import load_inputs  # noqa: E402

ELEMENTAL = {'Li': -1.9, 'O': -4.9, 'Ti': -7.8}
"""eV/atom, near CHGNet's; they only have to be fixed, no setting here depends on the hull."""


def parse_layout(text: str) -> tuple[int, int]:
    jobs, _, threads = text.partition('x')
    try:
        layout = int(jobs), int(threads)
    except ValueError:
        raise argparse.ArgumentTypeError(f'a layout is JOBSxTHREADS, like 6x2, not {text!r}') from None
    if min(layout) < 1:
        raise argparse.ArgumentTypeError(f'jobs and threads must be at least 1, not {text!r}')
    return layout


def run_layout(files: list[Path], jobs: int, threads: int, steps: int, workdir: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``jobs`` relax commands at once over ``files``, and how many structures they relaxed."""
    from aiida_wyckoffdiff.results_file import read_results

    elemental = workdir / 'elemental.json'
    elemental.write_text(json.dumps(ELEMENTAL))
    command = [str(Path(sys.executable).parent / 'wyckoffdiff'), 'relax', '--fix-symmetry', '--fmax', '0.01',
               '--steps', str(steps), '--elemental-energies', str(elemental), '--cores', str(threads), '--workers', '1']
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    outputs = [workdir / f'job{job}_{jobs}x{threads}.jsonl' for job in range(jobs)]
    processes = []
    for job, output in enumerate(outputs):
        with output.with_suffix('.err').open('w') as stderr:  # a file, not a pipe that fills while another job is waited on
            processes.append(subprocess.Popen([*command, '--output', str(output), *map(str, files[job::jobs])],
                                              stdout=subprocess.DEVNULL, stderr=stderr))
    for process, output in zip(processes, outputs):
        if process.wait():
            raise SystemExit(f'a relax job failed ({process.returncode}):\n{output.with_suffix(".err").read_text()[-2000:]}')
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    relaxed = sum(
        1 for output in outputs for structure in read_results(output.read_text())['structures'] if not structure['reason']
    )
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), relaxed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--structures', type=int, default=12)
    parser.add_argument('--steps', type=int, default=30)
    parser.add_argument('--skip', type=int, default=20, help='start after the N smallest inputs (default 20)')
    parser.add_argument('--layouts', type=parse_layout, nargs='+', default=[(1, 2), (6, 2), (2, 1)])
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    if args.quick:
        args.structures, args.steps, args.skip, args.layouts = 2, 2, 0, [(1, 2), (2, 1)]
    entries = load_inputs()[args.skip : args.skip + args.structures]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files = []
        for index, entry in enumerate(entries):
            files.append(workdir / f'input{index:02d}.cif')
            entry['structure'].to(filename=str(files[-1]))
        atoms = sum(len(entry['structure']) for entry in entries)
        print(f'{len(files)} structures ({atoms} atoms) x {args.steps} steps on {os.cpu_count()} cores, '
              f'load average {os.getloadavg()[0]:.2f}')
        first = None
        for jobs, threads in args.layouts:
            wall, cpu, relaxed = run_layout(files, jobs, threads, args.steps, workdir)
            first = first or wall
            print(f'{jobs} jobs x {threads} threads: {relaxed} of {len(files)} relaxed, wall {wall:6.1f} s, CPU '
                  f'{cpu:6.1f} s, {wall / first:.2f}x the first layout\'s wall time, load average '
                  f'{os.getloadavg()[0]:.2f}', flush=True)


if __name__ == '__main__':
    main()
