"""DFT follow-up of a Li-O hull: relax its structures and the Li and O references with Quantum ESPRESSO.

    verdi run examples/dft_hull_li_o.py [SOURCE] [--protocol fast] [--quick] [--mpi 2]

SOURCE is a finished phase-diagram run (pk) or a group (default wyckoffdiff/Li-O, which `make run` fills).
Needs the dft extra (pip install aiida-wyckoffdiff[dft]), pw.x, and `wyckoffdiff dft-setup` once per profile.
"""

import sys

from aiida_wyckoffdiff.dft import run_dft_hull_example

run_dft_hull_example(sys.argv[1:])
