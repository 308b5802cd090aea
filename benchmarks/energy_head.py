"""Energy head benchmark: does a head fitted to one round's relaxations rank the next round's new protostructures?

Reads result files of ``benchmarks/rounds.py`` (which keep round 1's fine-tuning rows and every arm's relaxed
e_above_hull per requested protostructure). Per file, the energy head (``model/energy.py``) is fitted to round 1's rows
with the shipped checkpoint's features and scored on the protostructures round 2 requested that round 1 did not:
Spearman correlation of prediction and relaxed e_above_hull, the median relaxed energy of the predicted-low and
predicted-high halves, how far its predictions spread within a space group's candidates and how well they rank them
there (what guidance can use). Beside it, a nearest-neighbour average over compositions alone (k = 5). And, without
any model, how well round 1's median relaxed energy per space group predicts round 2's (what
``spacegroups.allocate_samples`` uses).

    python benchmarks/energy_head.py benchmarks/rounds2_ti_o.json benchmarks/rounds2_cu_nb_o.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

NEIGHBOURS = 5


def composition_neighbours(train: list[Any], energies: np.ndarray, test: list[Any], elements: list[str]) -> np.ndarray:
    """The mean energy of the ``NEIGHBOURS`` training protostructures nearest in atomic fractions."""
    def fractions(items: list[Any]) -> np.ndarray:
        return np.array([[p.composition.get_atomic_fraction(e) for e in elements] for p in items])

    distances = ((fractions(test)[:, None, :] - fractions(train)[None, :, :]) ** 2).sum(-1)
    return energies[np.argsort(distances, axis=1)[:, :NEIGHBOURS]].mean(1)


def score(predicted: np.ndarray, relaxed: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    order = np.argsort(predicted)
    half = len(order) // 2
    rho = spearmanr(predicted, relaxed)
    return {'spearman': round(float(rho.statistic), 3), 'p': float(rho.pvalue),
            'median_predicted_low_half': round(float(np.median(relaxed[order[:half]])), 3),
            'median_predicted_high_half': round(float(np.median(relaxed[order[half:]])), 3)}


def evaluate(path: Path) -> dict[str, Any]:
    import torch

    from aiida_wyckoffdiff.exceptions import ProtostructureError
    from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, shipped_checkpoint_path
    from aiida_wyckoffdiff.model.encoding import encode
    from aiida_wyckoffdiff.model.energy import ENERGY_CLIP, fit_energy_head, pooled_features
    from aiida_wyckoffdiff.symmetry import Protostructure

    torch.set_num_threads(1)
    model = load_checkpoint(shipped_checkpoint_path(), 'cpu').model
    (chemsys, system), = json.loads(path.read_text())['systems'].items()
    elements = chemsys.split('-')

    def encodable(label: str) -> Protostructure | None:
        try:
            protostructure = Protostructure.from_label(label)
            encode(protostructure, model.config.elements, model.config.max_count)
        except ProtostructureError:
            return None
        return protostructure

    round_1 = next(arm for arm in system['arms'] if arm['round'] == 1 and arm['target'] == 0.0)
    later: dict[str, float] = {}
    for arm in system['arms']:
        if arm['round'] == 2:
            later.update(arm['e_above_hull_by_request'])
    fresh = {label: min(e, ENERGY_CLIP) for label, e in later.items()
             if label not in round_1['e_above_hull_by_request'] and encodable(label) is not None}
    head = fit_energy_head(model, system['rows'])
    test = [encodable(label) for label in fresh]
    relaxed = np.array(list(fresh.values()))
    predicted = head.predict(pooled_features(model, test, [elements] * len(test)))
    rows = [(p, min(row['e_above_hull'], ENERGY_CLIP)) for row in system['rows']
            if (p := encodable(row['label'])) is not None]
    by_group: dict[int, list[float]] = defaultdict(list)
    for protostructure, value in zip(test, predicted):
        by_group[protostructure.spacegroup].append(value)
    spread = [np.ptp(values) for values in by_group.values() if len(values) > 1]
    neighbours = composition_neighbours([p for p, _ in rows], np.array([e for _, e in rows]), test, elements)
    return {
        'chemsys': chemsys, 'rows': head.rows, 'alpha': head.alpha, 'loo_rmse': round(head.loo_rmse, 3),
        'rows_std': round(float(np.std([e for _, e in rows])), 3), 'fresh': len(fresh),
        'head': score(predicted, relaxed),
        'composition_neighbours': score(neighbours, relaxed),
        'predicted_spread_within_group_median': round(float(np.median(spread)), 3) if spread else None,
        'within_group_spearman_mean': {'head': within_group(test, predicted, relaxed),
                                       'composition_neighbours': within_group(test, neighbours, relaxed)},
        'group_medians_spearman': group_medians(round_1, system['arms']),
    }


def within_group(test: list[Any], predicted: np.ndarray, relaxed: np.ndarray) -> float | None:
    """The mean Spearman correlation of prediction and relaxed energy within each space group of 3 or more new
    protostructures: what a choice among one group's candidates could use."""
    from scipy.stats import spearmanr

    by_group: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for protostructure, guess, energy in zip(test, predicted, relaxed, strict=True):
        by_group[protostructure.spacegroup].append((guess, energy))
    rhos = [spearmanr(*zip(*pairs)).statistic for pairs in by_group.values()
            if len(pairs) >= 3 and np.ptp([guess for guess, _ in pairs]) > 0]
    return round(float(np.nanmean(rhos)), 3) if rhos else None


def group_medians(round_1: dict[str, Any], arms: list[dict[str, Any]]) -> dict[str, float]:
    """Per round-2 arm (by target), the Spearman correlation over space groups of round 1's and that arm's median
    relaxed e_above_hull of the protostructures requested in each group: how far where a round ends carries over."""
    from scipy.stats import spearmanr

    from aiida_wyckoffdiff.symmetry import Protostructure

    def medians(arm: dict[str, Any]) -> dict[int, float]:
        groups: dict[int, list[float]] = defaultdict(list)
        for label, energy in arm['e_above_hull_by_request'].items():
            groups[Protostructure.from_label(label).spacegroup].append(energy)
        return {group: float(np.median(values)) for group, values in groups.items()}

    first = medians(round_1)
    result = {}
    for arm in arms:
        if arm['round'] == 2 and not arm.get('energy_guidance') and arm.get('variant', 'even') == 'even':
            later = medians(arm)
            common = sorted(set(first) & set(later))
            result[str(arm['target'])] = round(float(spearmanr([first[g] for g in common],
                                                               [later[g] for g in common]).statistic), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', type=Path, help='Result files of benchmarks/rounds.py.')
    parser.add_argument('--output', type=Path, help='Write the rows as JSON here too.')
    arguments = parser.parse_args()
    rows = [evaluate(path) for path in arguments.results]
    for row in rows:
        print(json.dumps(row))
    if arguments.output:
        arguments.output.write_text(json.dumps(rows, indent=1) + '\n')


if __name__ == '__main__':
    main()
