"""Sample quality of a checkpoint on held-out data, and its loss curves: the numbers of docs/model.md.

1. Loss curves of base training and fine-tuning as a PNG.
2. Held-out requests: (chemical system, space group) pairs of ``test``-split crystals, each asked for
   ``--per-request`` samples at e_above_hull = 0. Reported: first-draw acceptance (before resampling),
   failures after resampling, uniqueness, novelty against the training labels, share obeying the requested
   space group and chemical system, and how often the held-out crystal's own label is among the samples
   (recovery). The same requests at guidance 0 (base model plus hard masks, adapters off) give a baseline.
3. The e_above_hull condition: the same requests at 0 and at a high target; samples whose label is a known
   Materials Project entry (any split) are scored by that entry's e_above_hull.

    python benchmarks/evaluate.py --checkpoint PATH [--dataset PATH] [--requests 60] [--output results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from aiida_wyckoffdiff.data import load_dataset
from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, shipped_checkpoint_path
from aiida_wyckoffdiff.model.config import SamplingConfig
from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate


def plot_history(history: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for axis, stage in zip(axes, ('base', 'finetune'), strict=True):
        records = history.get(stage, [])
        epochs = [r['epoch'] for r in records]
        axis.plot(epochs, [r['train_loss'] for r in records], marker='o', label='train')
        axis.plot(epochs, [r['val_loss'] for r in records], marker='s', label='validation')
        axis.set_title('base model (unconditional)' if stage == 'base' else 'adapter fine-tuning (conditioned)')
        axis.set_xlabel('epoch')
        axis.set_ylabel('cross-entropy per Wyckoff position (nats)')
        axis.set_yscale('log')  # the first epoch's mean starts far above the rest
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def held_out_requests(
    frame, count: int, seed: int, model_elements: tuple[str, ...]
) -> list[tuple[tuple[str, ...], int, str]]:
    """Distinct (elements, space group) pairs of test crystals the vocabulary covers, with one label each."""
    test = frame[frame['split'] == 'test'].sample(frac=1.0, random_state=seed)
    seen, requests = set(), []
    for row in test.itertuples():
        elements = tuple(row.chemsys.split('-'))
        key = (elements, int(row.spacegroup))
        if key in seen or not set(elements) <= set(model_elements) or row.num_atoms > 60:
            continue
        seen.add(key)
        requests.append((elements, int(row.spacegroup), row.label))
        if len(requests) == count:
            break
    return requests


def run(
    model,
    requests,
    per_request: int,
    e_above_hull: float,
    guidance: float,
    seed: int,
    known: dict[str, float],
    train_labels: set[str],
):
    samples, first, failed, recovered, obeyed, drawn = [], 0, 0, 0, 0, 0
    started = time.perf_counter()
    for index, (elements, spacegroup, label) in enumerate(requests):
        request = GenerationRequest(elements, (spacegroup,), e_above_hull, per_request)
        result = generate(
            model, request, SamplingConfig(guidance_scale=guidance), torch.Generator().manual_seed(seed + index)
        )
        labels = [sample.protostructure.label for sample in result.samples]
        first += sum(sample.draws == 1 for sample in result.samples)
        failed += result.num_failed
        drawn += result.num_drawn
        recovered += label in labels
        obeyed += sum(
            s.protostructure.spacegroup == spacegroup and s.protostructure.elements == tuple(sorted(elements))
            for s in result.samples
        )
        samples.extend(labels)
    total = len(requests) * per_request
    unique = set(samples)
    matched = [known[label] for label in samples if label in known]
    return {
        'requests': len(requests),
        'samples': len(samples),
        'seconds': round(time.perf_counter() - started, 1),
        'chains_drawn': drawn,
        'first_draw_acceptance': round(first / total, 3),
        'failed_after_resampling': failed,
        'obeyed_spacegroup_and_chemsys': round(obeyed / max(1, len(samples)), 3),
        'unique_share': round(len(unique) / max(1, len(samples)), 3),
        'novel_share_of_unique': round(sum(label not in train_labels for label in unique) / max(1, len(unique)), 3),
        'recovered_held_out_label': round(recovered / len(requests), 3),
        'known_mp_label_share': round(len(matched) / max(1, len(samples)), 3),
        'known_mp_e_above_hull_mean': round(float(np.mean(matched)), 4) if matched else None,
        'known_mp_stable_share': round(float(np.mean(np.array(matched) <= 0.01)), 3) if matched else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint')
    parser.add_argument('--dataset')
    parser.add_argument('--requests', type=int, default=60)
    parser.add_argument('--per-request', type=int, default=8)
    parser.add_argument('--high-e-above-hull', type=float, default=0.5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--max-draws', type=int, default=10)
    parser.add_argument('--plot', default='docs/model_loss.png')
    parser.add_argument('--output', default='benchmarks/evaluate_results.json')
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(arguments.checkpoint or shipped_checkpoint_path(), 'cpu')
    plot_history(checkpoint.history, Path(arguments.plot))
    frame = load_dataset(arguments.dataset)
    train_labels = set(frame.loc[frame['split'] == 'train', 'label'])
    known = frame.dropna(subset=['e_above_hull']).groupby('label')['e_above_hull'].min().to_dict()
    requests = held_out_requests(frame, arguments.requests, arguments.seed, checkpoint.model_config.elements)
    results = {
        'checkpoint_sha256': checkpoint.sha256,
        'history_last': {k: v[-1] for k, v in checkpoint.history.items() if v},
    }
    settings = {
        'guided_e0': (0.0, 2.0),
        'unguided_base_e0': (0.0, 0.0),
        f'guided_e{arguments.high_e_above_hull}': (arguments.high_e_above_hull, 2.0),
    }
    for name, (energy, guidance) in settings.items():
        results[name] = run(
            checkpoint.model, requests, arguments.per_request, energy, guidance, arguments.seed, known, train_labels
        )
        print(name, json.dumps(results[name]), flush=True)
    Path(arguments.output).write_text(json.dumps(results, indent=1) + '\n')


if __name__ == '__main__':
    main()
