"""Structures relaxed per minute, per relaxer and cell size, one at a time versus batched in one call.

Cells: rattled (0.05 Å) rock-salt MgO (8 atoms) and SrTiO3 perovskite supercells (20 and 40 atoms), relaxed
positions + cell with FIRE to fmax 0.1 eV/Å (60 steps at most), conventional cells kept (no primitive reduction),
so the size is what the table says. One torch thread.

MatterSim needs a checkpoint (``$WYCKOFFDIFF_MATTERSIM_CHECKPOINT`` or the 1M cache file); without one it is timed
with the same M3GNet architecture randomly initialised, which costs the same per step, but relaxes in a different
number of steps, so only its time per structure-step is comparable.

Usage: ``python benchmarks/relax.py [--relaxers chgnet sevenn mattersim] [--count 4] [--device cpu]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def cells(count: int) -> dict[int, list]:
    import numpy as np
    from pymatgen.core import Lattice, Structure

    magnesia = Structure.from_spacegroup(225, Lattice.cubic(4.25), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perovskite = Structure.from_spacegroup(
        221, Lattice.cubic(3.95), ['Sr', 'Ti', 'O'], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]
    )
    bases = {8: magnesia, 20: perovskite * (1, 2, 2), 40: perovskite * (2, 2, 2)}
    rng = np.random.default_rng(0)
    return {
        size: [
            Structure(
                s.lattice, s.species, s.cart_coords + rng.normal(scale=0.05, size=(size, 3)), coords_are_cartesian=True
            )
            for _ in range(count)
        ]
        for size, s in bases.items()
    }


def potential_for(name: str, device: str, workdir: Path):
    from aiida_wyckoffdiff.exceptions import RelaxerError
    from aiida_wyckoffdiff.potentials import load_potential

    try:
        return load_potential(name, device=device), ''
    except RelaxerError:
        if name != 'mattersim':
            raise
    from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
    from mattersim.forcefield.potential import Potential

    path = workdir / 'random-m3gnet.pth'
    Potential(M3Gnet(device=device), device=device).save(str(path))
    return load_potential(name, path, device=device), ' (random weights)'


def main() -> None:
    import torch

    from aiida_wyckoffdiff.relax import RelaxSettings, relax_structures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--relaxers', nargs='+', default=['chgnet', 'sevenn', 'mattersim'])
    parser.add_argument('--count', type=int, default=4, help='structures per cell size')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = RelaxSettings(fmax=0.1, steps=60, primitive=False)
    structures = cells(args.count)
    print(
        f'{"relaxer":<28} {"atoms":>5} {"mode":>8} {"structures/min":>15} {"ms/structure-step":>18} {"mean steps":>10}'
    )
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.relaxers:
            potential, note = potential_for(name, args.device, Path(workdir))
            relax_structures(structures[8][:1], potential, RelaxSettings(steps=2))  # warm-up: lazy imports, JIT
            for size, batch in structures.items():
                for mode in ('single', 'batched'):
                    start = time.perf_counter()
                    if mode == 'single':
                        outcomes = [relax_structures([s], potential, settings)[0] for s in batch]
                    else:
                        outcomes = relax_structures(batch, potential, settings)
                    elapsed = time.perf_counter() - start
                    steps = sum(o.steps + 1 for o in outcomes)  # +1: the final evaluation
                    print(
                        f'{name + note:<28} {size:>5} {mode:>8} {60 * len(batch) / elapsed:>15.1f} '
                        f'{1000 * elapsed / steps:>18.1f} {steps / len(batch):>10.1f}',
                        flush=True,
                    )


if __name__ == '__main__':
    main()
