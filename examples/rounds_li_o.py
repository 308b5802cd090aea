"""Li-O in rounds: scan, relax, place on the hull, fine-tune on what was relaxed, and scan again from the new weights.

    verdi run examples/rounds_li_o.py [--rounds 2] [--samples 1] [--spacegroup-count 8] [--epochs 1] [--no-caching]

Needs a profile with the wyckoffdiff code (`verdi presto` then `wyckoffdiff setup`) and the dataset
(`wyckoffdiff data build`). Caching is on, so running it again reuses every job (docs/rounds.md).
"""

import sys

from aiida_wyckoffdiff.launch import run_rounds_example

run_rounds_example('Li-O', sys.argv[1:])
