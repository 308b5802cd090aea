"""Zn-O phase diagram: generate, realize, relax (CHGNet, offline) and place on the Materials Project hull.

    verdi run examples/phase_diagram_zn_o.py [--protocol fast|balanced|paper|discovery] [--samples N] [--steps 150] [--relaxer chgnet]

The MP data holds no elemental Zn structure, so Zn's reference is ASE's standard state (hcp), relaxed with the
same potential (docs/references.md). Needs a profile with the wyckoffdiff code: `verdi presto` then `wyckoffdiff setup`.
"""

import sys

from aiida_wyckoffdiff.launch import run_phase_diagram_example

run_phase_diagram_example('Zn-O', sys.argv[1:])
