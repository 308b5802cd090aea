"""The README's main-job figures come from the committed result file, and that file from the example's summary."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from aiida_wyckoffdiff.launch import scan_summary

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / 'scripts' / 'readme_figures.py'


def readme_figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location('readme_figures', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_states_the_committed_make_run_figures() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), '--check'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_block_follows_the_result_file() -> None:
    """Each figure the README claims is one of the result file's: change one and the block no longer matches."""
    module = readme_figures()
    summary = json.loads(module.RESULT.read_text())
    readme = module.README.read_text()
    block = module.render(summary)
    assert block in readme
    assert f"**{len(summary['hull_structures'])} ended within {summary['hull_tolerance']} eV/atom" in block
    assert module.minutes(summary['workflow_seconds']) in block and summary['date'] in block
    assert f"{len(summary['plots'])} plot files" in block and all(Path(path).stem in block for path in summary['plots'])
    another = {'formula': 'LiO9', 'e_above_hull': 0.05, 'spacegroup': 1}
    for field, value in (('workflow_seconds', summary['workflow_seconds'] + 60), ('relaxed', summary['relaxed'] + 1),
                         ('plots', summary['plots'][1:]), ('hull_structures', [*summary['hull_structures'], another]),
                         ('date', '1999-01-01')):
        changed = copy.deepcopy(summary) | {field: value}
        assert module.render(changed) not in readme, field


def test_scan_summary_counts_a_scan() -> None:
    def row(key: str, e_above_hull: float | None, pruned: str | None = None, duplicate_of: str | None = None) -> dict:
        return {'key': key, 'formula': 'Li2O2', 'e_above_hull': e_above_hull, 'pruned': pruned,
                'duplicate_of': duplicate_of, 'spacegroup_found': 194}

    rows = [row('s0', 0.09), row('s1', 0.02), row('s2', 0.05, duplicate_of='s1'), row('s3', 2.4, pruned='2.4 after 20'),
            row('s4', None)]
    realization = [{'ok': True}] * 5 + [{'ok': False}]
    summary = scan_summary(rows, realization, hull_keys={'s0', 's1'})
    assert summary == {
        'protostructures': 6, 'realized': 5, 'relaxed': 4, 'pruned': 1, 'failed': 1,
        'hull_structures': [{'formula': 'Li2O2', 'e_above_hull': 0.02, 'spacegroup': 194},
                            {'formula': 'Li2O2', 'e_above_hull': 0.09, 'spacegroup': 194}],
    }
