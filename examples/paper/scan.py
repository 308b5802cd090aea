"""The paper's phase-diagram scans: a chemical system over the 20 most frequent space groups at e_above_hull = 0.

    verdi run examples/paper/scan.py CHEMSYS [--protocol fast|balanced|paper|discovery] [--samples N] [--free] [--steps 150]

CHEMSYS is Li-O or Ti-O (binary hulls), Al-Mg-O (ternary) or Ba-Ta-In-O (quaternary), or any other system
of the model's elements. The default protocol ``fast`` draws 2 samples per space group; ``--protocol paper`` the paper's 64
(1280 structures). Writes the hull plots, the symmetry heatmap, ``table.json`` and ``metrics.json`` (validity,
uniqueness, novelty, S.U.N., symmetry kept, known phases regenerated) to results/paper/CHEMSYS.
"""

import sys
from pathlib import Path

from aiida_wyckoffdiff.launch import run_phase_diagram_example

if len(sys.argv) < 2 or sys.argv[1].startswith('-'):
    raise SystemExit(__doc__)
run_phase_diagram_example(sys.argv[1], sys.argv[2:], results=Path('results') / 'paper', score=True)
