"""Regenerate ``aiida_wyckoffdiff/resources/wyckoff_prior.json``: the training split's per-space-group orbit counts and
Wyckoff-letter frequencies, which random protostructure search draws from (``baselines.shipped_prior``).

Usage: ``python scripts/build_wyckoff_prior.py [DATASET]``; DATASET defaults to the cached dataset of the shared data
(``wyckoffdiff data build`` makes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aiida_wyckoffdiff.baselines import PRIOR_FILE, WyckoffPrior
from aiida_wyckoffdiff.data import dataset_hash, default_dataset_path, find_data_dir, load_dataset

ROOT = Path(__file__).resolve().parent.parent

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dataset', nargs='?', type=Path)
    args = parser.parse_args()
    dataset = args.dataset or default_dataset_path(find_data_dir())
    frame = load_dataset(dataset)
    document = {
        'description': 'Per space group of the train split of the protostructure dataset built from mp_structures.csv.gz '
        '(Materials Project data, CC BY 4.0): rows by number of occupied orbits, and orbits by Wyckoff letter. '
        'Regenerate with scripts/build_wyckoff_prior.py.',
        'dataset_sha256': dataset_hash(dataset),
        'rows': int((frame['split'] == 'train').sum()),
        'prior': WyckoffPrior.from_dataset(frame, 'train').as_dict(),
    }
    path = ROOT / 'aiida_wyckoffdiff' / 'resources' / PRIOR_FILE
    path.write_text(json.dumps(document, separators=(',', ':')) + '\n')
    print(f'{path.relative_to(ROOT)}: {path.stat().st_size / 1e3:.0f} kB from {document["rows"]} training rows')
