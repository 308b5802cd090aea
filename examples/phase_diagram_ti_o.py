"""Ti-O phase diagram: generate, realize, relax (CHGNet, offline) and place on the Materials Project hull.

    verdi run examples/phase_diagram_ti_o.py [--protocol fast|balanced|paper|discovery] [--samples N] [--steps 150] [--relaxer chgnet]

Needs a profile with the wyckoffdiff code: `verdi presto` then `wyckoffdiff setup`.
"""

import sys

from aiida_wyckoffdiff.launch import run_phase_diagram_example

run_phase_diagram_example('Ti-O', sys.argv[1:])
