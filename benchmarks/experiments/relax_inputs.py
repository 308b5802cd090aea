"""Make the fixed input set of ``benchmarks/relax.py``: realized structures from a real scan of Li-O and Ti-O.

The shipped model draws ``--samples`` protostructures per system over the 20 space groups a scan uses by default
(conditioned on e_above_hull = 0, as the main job is), PyXtal realizes the distinct ones (seed 0), and the first
``--keep`` realized per system are written, with their labels, to ``benchmarks/data/relax_inputs.json``.

Usage: ``python benchmarks/experiments/relax_inputs.py [--samples 64] [--keep 32]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OUTPUT = Path(__file__).parents[1] / 'data' / 'relax_inputs.json'
SYSTEMS = ('Li-O', 'Ti-O')


def compact(structure) -> dict:  # noqa: ANN001 - a pymatgen Structure
    """Lattice (Å), species and fractional coordinates: a tenth of the size of pymatgen's dict."""
    return {
        'lattice': structure.lattice.matrix.round(6).tolist(),
        'species': [site.specie.symbol for site in structure],
        'frac_coords': structure.frac_coords.round(6).tolist(),
    }


def main() -> None:
    import torch

    from aiida_wyckoffdiff.data import training_spacegroups
    from aiida_wyckoffdiff.model.config import SamplingConfig
    from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate_json
    from aiida_wyckoffdiff.realize import realize_many

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=64, help='protostructures drawn per system')
    parser.add_argument('--keep', type=int, default=32, help='realized structures kept per system')
    args = parser.parse_args()
    torch.set_num_threads(1)
    spacegroups = tuple(training_spacegroups(20))
    entries = []
    for chemsys in SYSTEMS:
        request = GenerationRequest(tuple(chemsys.split('-')), spacegroups, 0.0, args.samples)
        document = generate_json(request, SamplingConfig(), seed=0)
        labels = list(dict.fromkeys(sample['protostructure'] for sample in document['samples']))
        realized = [(label, r) for label, r in zip(labels, realize_many(labels, seed=0, progress=False)) if r.ok]
        entries += [{'chemsys': chemsys, 'label': label, 'structure': compact(r.structure)} for label, r in realized[: args.keep]]
        print(f'{chemsys}: {len(document["samples"])} drawn, {len(labels)} distinct, {len(realized)} realized')
    OUTPUT.write_text(json.dumps({'spacegroups': spacegroups, 'structures': entries}) + '\n')
    print(f'wrote {len(entries)} structures to {OUTPUT}')


if __name__ == '__main__':
    main()
