"""Regenerate ``aiida_wyckoffdiff/resources/wyckoff_prior.json``: per space group of the training split, crystals by
number of occupied orbits and orbits by Wyckoff letter, which random protostructure search draws from
(``baselines.shipped_prior``).

The labels are the shipped reference table's (``resources/mp_reference_entries.csv.gz``, canonical labels of every MP
structure), restricted to the materials of the main data file in the train split, which are the dataset's training
rows (``wyckoffdiff data build``).

Usage: ``python scripts/build_wyckoff_prior.py [DATA_DIR]``; DATA_DIR defaults to ``$WYCKOFFDIFF_DATA_DIR`` or
``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from aiida_wyckoffdiff.baselines import PRIOR_FILE, WyckoffPrior
from aiida_wyckoffdiff.data import MAIN_FILE, find_data_dir, split_of
from aiida_wyckoffdiff.files import file_sha256
from aiida_wyckoffdiff.references import all_reference_entries

ROOT = Path(__file__).resolve().parent.parent

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_dir', nargs='?', type=Path)
    args = parser.parse_args()
    main_file = find_data_dir(args.data_dir) / MAIN_FILE
    training = {mid for mid in pd.read_csv(main_file, usecols=['material_id'])['material_id'] if split_of(mid) == 'train'}
    table = all_reference_entries()
    labels = [label for mid, label in zip(table['material_id'], table['label'], strict=True) if mid in training and label]
    document = {
        'description': f'Per space group of the train split of {MAIN_FILE} (Materials Project data, CC BY 4.0): '
        'crystals by number of occupied orbits, and orbits by Wyckoff letter. Regenerate with '
        'scripts/build_wyckoff_prior.py.',
        'data_sha256': file_sha256(main_file),
        'rows': len(labels),
        'prior': WyckoffPrior.from_labels(labels).as_dict(),
    }
    path = ROOT / 'aiida_wyckoffdiff' / 'resources' / PRIOR_FILE
    path.write_text(json.dumps(document, separators=(',', ':')) + '\n')
    print(f'{path.relative_to(ROOT)}: {path.stat().st_size / 1e3:.0f} kB from {len(labels)} training structures')
