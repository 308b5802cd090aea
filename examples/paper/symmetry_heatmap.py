"""Does the requested symmetry survive relaxation? One scan relaxed freely and with the staged protocol.

    verdi run examples/paper/symmetry_heatmap.py CHEMSYS [--protocol fast|balanced|paper|discovery] [--samples N] [--steps 150]

The paper's Figure 2: rows are the requested space groups, columns the crystal system after relaxation. Both
runs use the same seed, so they generate and realize the same structures and differ only in the relaxation: free
(``--free``) or staged (the default: FixSymmetry first, free only near the hull; docs/relaxation.md).
Writes results/paper/symmetry/CHEMSYS/{free,staged}/ (heatmaps, tables, metrics) and prints the shares kept.
"""

import json
import sys
from pathlib import Path

from aiida_wyckoffdiff.launch import run_phase_diagram_example

if len(sys.argv) < 2 or sys.argv[1].startswith('-'):
    raise SystemExit(__doc__)
chemsys, options = sys.argv[1], sys.argv[2:]
folder = Path('results') / 'paper' / 'symmetry' / chemsys
for name, extra in (('free', ['--free']), ('staged', [])):
    run_phase_diagram_example(chemsys, [*options, *extra, '--output', str(folder / name)], score=True)
print(f'{"relaxation":<12} {"space group kept":>17} {"crystal system kept":>20}')
for name in ('free', 'staged'):
    metrics = json.loads((folder / name / 'metrics.json').read_text())['metrics']
    print(f'{name:<12} {100 * metrics["spacegroup_kept"]:16.1f}% {100 * metrics["crystal_system_kept"]:19.1f}%')
