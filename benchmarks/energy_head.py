"""Energy head benchmark: does a head fitted to one round's relaxations rank the next round's new protostructures?

Reads result files of ``benchmarks/rounds.py`` (which keep round 1's fine-tuning rows and every arm's relaxed
e_above_hull per requested protostructure). Per file, the energy head (``model/energy.py``) is fitted to round 1's rows
with the shipped checkpoint's features and scored on the protostructures round 2 requested that round 1 did not:
Spearman correlation of prediction and relaxed e_above_hull, the median relaxed energy of the predicted-low and
predicted-high halves, and how far its predictions spread within a space group's candidates (what guidance can use).
Beside it, a nearest-neighbour average over compositions alone (k = 5).

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
    return {
        'chemsys': chemsys, 'rows': head.rows, 'alpha': head.alpha, 'loo_rmse': round(head.loo_rmse, 3),
        'rows_std': round(float(np.std([e for _, e in rows])), 3), 'fresh': len(fresh),
        'head': score(predicted, relaxed),
        'composition_neighbours': score(composition_neighbours([p for p, _ in rows], np.array([e for _, e in rows]),
                                                               test, elements), relaxed),
        'predicted_spread_within_group_median': round(float(np.median(spread)), 3) if spread else None,
    }


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
