"""Realization speed: median seconds per successful realization, attempts and success rate, on one core.

A fixed set: 60 rows drawn with a fixed seed from the shared data (or the committed sample when
the shared folder is absent), plus spinel MgAl2O4. Prints numbers; asserts nothing. Wall time
and process CPU time are both shown: on a shared machine the CPU time is the steadier number.

    python benchmarks/realize.py [--rows 60] [--seed 0]
"""

from __future__ import annotations

import platform
import statistics
import time
import warnings
from pathlib import Path

import click
import pandas as pd
from pymatgen.core import Structure

from aiida_wyckoffdiff.data import MAIN_FILE, find_data_dir
from aiida_wyckoffdiff.exceptions import DataNotFoundError
from aiida_wyckoffdiff.realize import realize
from aiida_wyckoffdiff.symmetry import structure_label

SPINEL = 'A2BC4_cF56_227_c_b_e:Al-Mg-O'


def benchmark_labels(rows: int, seed: int) -> list[str]:
    try:
        source = find_data_dir() / MAIN_FILE
    except DataNotFoundError:
        source = Path(__file__).parents[1] / 'tests' / 'data' / MAIN_FILE
    table = pd.read_csv(source).sample(n=rows, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # CIF parser notes on rounded coordinates
        labels = [structure_label(Structure.from_str(cif, fmt='cif')) for cif in table['cif']]
    return sorted(set(labels)) + [SPINEL]


@click.command()
@click.option('--rows', default=60, show_default=True)
@click.option('--seed', default=0, show_default=True)
def main(rows: int, seed: int) -> None:
    labels = benchmark_labels(rows, seed)
    realize(SPINEL, seed=seed)  # imports and PyXtal's group tables load once, outside the timings
    records = []
    for label in labels:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = realize(label, seed=seed)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        records.append((label, result.protostructure.num_atoms, result.ok, result.attempts, seconds, cpu))
    frame = pd.DataFrame(records, columns=['label', 'atoms', 'ok', 'attempts', 'seconds', 'cpu'])
    click.echo(f'machine: {platform.processor() or platform.machine()}, one process, seed {seed}')
    for name, part in (('<= 20 atoms', frame[frame.atoms <= 20]), ('> 20 atoms', frame[frame.atoms > 20]), ('all', frame)):
        done = part[part.ok]
        if part.empty:
            continue
        click.echo(
            f'{name:>12}: {len(part):3d} protostructures, success {len(done) / len(part):6.1%}, '
            f'median {statistics.median(done.seconds) if len(done) else float("nan"):.4f} s per success '
            f'({statistics.median(done.cpu) if len(done) else float("nan"):.4f} s CPU), '
            f'mean attempts {part.attempts.mean():.2f}, total {part.seconds.sum():.2f} s'
        )
    spinel = frame[frame.label == SPINEL].iloc[0]
    click.echo(f'spinel MgAl2O4 (56 atoms): {spinel.seconds:.4f} s, {spinel.attempts} attempt(s)')
    paper = 26 / 16
    click.echo(f'paper: {paper:.2f} s per structure (26 s for 16); target here: median <= 0.1 s for <= 20 atoms')
    failed = frame[~frame.ok]
    for row in failed.itertuples():
        click.echo(f'  failed: {row.label} after {row.attempts} attempts')


if __name__ == '__main__':
    main()
