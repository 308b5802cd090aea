"""Regenerate ``aiida_wyckoffdiff/resources`` (reference phases and elemental ground states) from the shared data.

Usage: ``python scripts/build_reference_entries.py [DATA_DIR] [--processes N]``; DATA_DIR defaults to
``$WYCKOFFDIFF_DATA_DIR`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aiida_wyckoffdiff.references import build_reference_files

ROOT = Path(__file__).resolve().parent.parent

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get('WYCKOFFDIFF_DATA_DIR', ROOT.parent / 'shared' / 'data')
    parser.add_argument('data_dir', nargs='?', type=Path, default=Path(default))
    parser.add_argument('--processes', type=int, default=1)
    args = parser.parse_args()
    for path in build_reference_files(args.data_dir, ROOT / 'aiida_wyckoffdiff' / 'resources', args.processes):
        print(f'{path.relative_to(ROOT)}: {path.stat().st_size / 1e3:.0f} kB')
