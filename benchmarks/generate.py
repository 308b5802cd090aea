"""Time Li-O protostructure generation at the default strided steps and at the full chain (issue 3, item 8).

Prints one line per setting: samples, reverse steps, seconds (model already loaded, best of ``--repeats``),
chains drawn, and sample quality (first-draw acceptance, unique labels, labels novel against the training
split). The target is 16 samples in under 5 s on 2 CPU cores at the default settings.

    python benchmarks/generate.py [--checkpoint PATH] [--device cpu] [--threads 2] [--dataset PATH]
"""

from __future__ import annotations

import argparse
import time

import torch

from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, select_device, shipped_checkpoint_path
from aiida_wyckoffdiff.model.config import SamplingConfig
from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate


def training_labels(dataset: str | None) -> set[str] | None:
    """Canonical labels of the training split, for novelty; ``None`` where no dataset is at hand."""
    from aiida_wyckoffdiff.data import load_dataset
    from aiida_wyckoffdiff.exceptions import DataNotFoundError

    try:
        frame = load_dataset(dataset)
    except DataNotFoundError:
        return None
    return set(frame.loc[frame['split'] == 'train', 'label'])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', help='default: the shipped checkpoint')
    parser.add_argument('--device', help='default: CUDA when present, else CPU')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (the target assumes 2 cores)')
    parser.add_argument('--dataset', help='dataset file for novelty (default: the cache, skipped if absent)')
    parser.add_argument('--repeats', type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    device = select_device(arguments.device)
    checkpoint = load_checkpoint(arguments.checkpoint or shipped_checkpoint_path(), device)
    known = training_labels(arguments.dataset)
    num_timesteps = checkpoint.model_config.num_timesteps
    print(
        f'device {device}, {torch.get_num_threads()} threads, checkpoint {checkpoint.sha256[:12]}, T = {num_timesteps}'
    )
    print('samples  steps  seconds  drawn  first-draw  unique  novel')
    warm = GenerationRequest(('Li', 'O'), (225,), 0.0, 2)
    generate(checkpoint.model, warm, SamplingConfig(num_steps=5), torch.Generator(device=device).manual_seed(0))
    for num_samples in (16, 64):
        for steps in (SamplingConfig().num_steps, num_timesteps):
            request = GenerationRequest(('Li', 'O'), (225, 194), e_above_hull=0.0, num_samples=num_samples)
            best = float('inf')
            for repeat in range(arguments.repeats):
                generator = torch.Generator(device=device).manual_seed(repeat)
                started = time.perf_counter()
                result = generate(checkpoint.model, request, SamplingConfig(num_steps=steps), generator)
                best = min(best, time.perf_counter() - started)
            labels = [sample.protostructure.label for sample in result.samples]
            first = sum(sample.draws == 1 for sample in result.samples) / num_samples
            unique = len(set(labels)) / max(1, len(labels))
            novel = (
                'n/a'
                if known is None
                else f'{sum(label not in known for label in set(labels)) / max(1, len(set(labels))):.2f}'
            )
            print(
                f'{num_samples:7d}  {steps:5d}  {best:7.2f}  {result.num_drawn:5d}  {first:10.2f}  {unique:6.2f}  {novel:>5}'
            )


if __name__ == '__main__':
    main()
