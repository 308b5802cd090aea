"""Space groups for a chemical system: does the scan's choice contain the groups of the system's real crystals?

For every chemical system of a held-out split, the (chemical system, space group) pairs of its crystals are the
groups a scan should request. Recall is the share of those pairs whose group is among the ``--count`` chosen:

- ``top20``: the most frequent groups of the training data, whatever the chemistry (the paper's scan);
- ``chemistry, scale s``: groups of training crystals of the same arity weighted ``exp(-d / s)`` by the
  Mendeleev-number distance ``d`` of their elements (``aiida_wyckoffdiff.spacegroups``); ``s = inf`` is the plain
  frequency of the groups among crystals of that arity.

The scale is chosen on the validation split, and the test split measures it. ``unseen`` counts only systems without
a training crystal of the same elements, where the choice cannot read the answer from a crystal of the system itself.

    python benchmarks/spacegroups.py [--count 20] [--output benchmarks/spacegroups_results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCALES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
ARITIES = (2, 3, 4, 5)


def held_out_pairs(split: str) -> dict[str, set[int]]:
    """Chemical system -> space groups of its crystals in ``split``."""
    from aiida_wyckoffdiff.data import load_dataset

    table = load_dataset().query('split == @split')
    pairs: dict[str, set[int]] = defaultdict(set)
    for chemsys, group in zip(table['chemsys'], table['spacegroup'], strict=True):
        pairs[chemsys].add(int(group))
    return pairs


def training_systems() -> set[str]:
    from aiida_wyckoffdiff.data import load_dataset

    return set(load_dataset().query("split == 'train'")['chemsys'])


def recall(pairs: dict[str, set[int]], choose: Any) -> dict[str, float | int]:
    """Share of the (system, group) pairs whose group ``choose(elements)`` contains."""
    found = total = 0
    for chemsys, groups in pairs.items():
        chosen = set(choose(chemsys.split('-')))
        found += len(groups & chosen)
        total += len(groups)
    return {'recall': round(found / total, 4) if total else None, 'pairs': total, 'systems': len(pairs)}


def measure(split: str, count: int, scales: tuple[float, ...]) -> dict[str, Any]:
    """Recall per method and arity, over all systems of ``split`` and over those unseen in training."""
    from aiida_wyckoffdiff.spacegroups import chemistry_spacegroups, top_spacegroups

    pairs = held_out_pairs(split)
    seen = training_systems()
    top = set(top_spacegroups(count).spacegroups)
    methods = {'top20': lambda elements: top}
    for scale in scales:
        methods[f'chemistry, scale {scale:g}'] = (
            lambda elements, scale=scale: chemistry_spacegroups(elements, count, scale).spacegroups)
    results: dict[str, Any] = {}
    for arity in ARITIES:
        of_arity = {chemsys: groups for chemsys, groups in pairs.items() if chemsys.count('-') + 1 == arity}
        unseen = {chemsys: groups for chemsys, groups in of_arity.items() if chemsys not in seen}
        results[str(arity)] = {name: {'all': recall(of_arity, choose), 'unseen': recall(unseen, choose)}
                               for name, choose in methods.items()}
    return results


def best_scale(validation: dict[str, Any]) -> float:
    """The scale of highest recall over all validation pairs of arities 3 and 4, the systems the choice is for."""
    def pooled(name: str) -> float:
        rows = [validation[str(arity)][name]['all'] for arity in (3, 4)]
        return sum(row['recall'] * row['pairs'] for row in rows) / sum(row['pairs'] for row in rows)

    return max((scale for scale in SCALES), key=lambda scale: pooled(f'chemistry, scale {scale:g}'))


def table(results: dict[str, Any], names: list[str]) -> str:
    lines = ['| elements | systems (unseen) | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 2) + '|']
    for arity, methods in results.items():
        first = methods[names[0]]
        cells = [f"{methods[name]['all']['recall']:.3f} ({methods[name]['unseen']['recall']:.3f})" for name in names]
        systems = f"{first['all']['systems']} ({first['unseen']['systems']})"
        lines.append(f'| {arity} | {systems} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--count', type=int, default=20)
    parser.add_argument('--output', type=Path, default=ROOT / 'benchmarks' / 'spacegroups_results.json')
    options = parser.parse_args(argv)
    validation = measure('val', options.count, SCALES)
    scale = best_scale(validation)
    test = measure('test', options.count, (scale,))
    names = [f'chemistry, scale {s:g}' for s in SCALES]
    print('validation split: recall of (system, group) pairs (unseen systems in brackets)')
    print(table(validation, ['top20', *names]))
    print(f'\ntest split, scale {scale:g} chosen on validation')
    print(table(test, ['top20', f'chemistry, scale {scale:g}']))
    options.output.write_text(json.dumps({'count': options.count, 'command': ' '.join(['python', *sys.argv]),
                                          'chosen_scale': scale, 'validation': validation, 'test': test}, indent=1))
    print(f'\nwritten: {options.output}')


if __name__ == '__main__':
    main()
