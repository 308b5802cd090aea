"""Ba-In-O-Ta phase diagram: the paper's quaternary, where the double perovskite Ba2InTaO6 (Fm-3m) lies on the hull.

    verdi run examples/phase_diagram_ba_in_o_ta.py [--protocol fast|balanced|paper|discovery] [--samples N] [--steps 150] [--relaxer chgnet]

Needs a profile with the wyckoffdiff code: `verdi presto` then `wyckoffdiff setup`. The hull picture is pymatgen's
tetrahedron (results/Ba-In-O-Ta/hull_Ba-In-O-Ta.png); docs/spacegroups.md shows one.
"""

import sys

from aiida_wyckoffdiff.launch import run_phase_diagram_example

run_phase_diagram_example('Ba-In-O-Ta', sys.argv[1:])
