"""Put the main job's measured figures (docs/results/make_run.json) into the README's marked block.

    make run RUN_ARGS='--summary docs/results/make_run.json'   # measure: writes the file
    python scripts/readme_figures.py                            # rewrite the README block from it, copy its hull plot
    python scripts/readme_figures.py --check                    # exit 1 if the README does not match it

tests/test_readme.py runs the check, so the README cannot claim figures the committed result file does not hold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / 'docs' / 'results' / 'make_run.json'
README = ROOT / 'README.md'
HULL_PICTURE = ROOT / 'docs' / 'images' / 'make_run_hull.png'
BEGIN = '<!-- make-run figures: written by scripts/readme_figures.py from docs/results/make_run.json -->'
END = '<!-- end of make-run figures -->'


def minutes(seconds: float) -> str:
    return f'{int(seconds) // 60} min {int(seconds) % 60:02d} s'


def render(summary: dict[str, Any]) -> str:
    """The README block: when and where it was measured, the counts, the structures near the hull, the plots."""
    near = summary['hull_structures']
    structures = ', '.join(f"{row['formula']} in space group {row['spacegroup']} at {row['e_above_hull']:+.3f}"
                           for row in near) or 'none'
    kinds: dict[str, list[str]] = {}
    for path in map(Path, summary['plots']):
        kinds.setdefault(path.stem, []).append(path.suffix.removeprefix('.').upper())
    plots = ', '.join(f"`{stem}` ({' and '.join(sorted(suffixes))})" for stem, suffixes in kinds.items())
    folder = Path(summary['plots'][0]).parent.as_posix()
    when = (f"Last measured on {summary['date']} ({summary['cores']} cores, load average"
            f" {summary['load_average_at_start']} at the start and {summary['load_average_at_end']} at the end;"
            f" the `{summary['protocol']}` protocol)")
    counts = (f"The model drew {summary['protostructures']} distinct {summary['chemsys']} protostructures,"
              f" {summary['realized']} were realized and {summary['relaxed']} relaxed ({summary['pruned']} pruned,"
              f" {summary['failed']} failed)")
    hits = f"**{len(near)} ended within {summary['hull_tolerance']} eV/atom of the Materials Project hull**"
    text = (f"{when}: the workflow took **{minutes(summary['workflow_seconds'])}** after the install. {counts}; {hits}"
            f" (eV/atom: {structures}). It writes {len(summary['plots'])} plot files into `{folder}/`: {plots}.")
    return '\n'.join([BEGIN, text, END])


def replace_block(readme: str, block: str) -> str:
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not (begin and end):
        raise SystemExit(f'{README.name} lacks the marked block ({BEGIN} ... {END})')
    return head + block + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true', help='Only compare; exit 1 if the README differs.')
    options = parser.parse_args()
    summary = json.loads(RESULT.read_text())
    readme = README.read_text()
    updated = replace_block(readme, render(summary))
    if options.check:
        if updated != readme:
            sys.exit(f'{README.name} does not match {RESULT.relative_to(ROOT)}: run python scripts/readme_figures.py')
        return
    README.write_text(updated)
    hull = next(path for path in summary['plots'] if Path(path).name.startswith('hull_') and path.endswith('.png'))
    shutil.copyfile(ROOT / hull, HULL_PICTURE)


if __name__ == '__main__':
    main()
