"""Near-hull structures per core-minute, per system and generator, from the outcome level of discovery.py results.

The discovery benchmark writes its outcome rows as tables; side-by-side runs are easier to judge as bars on a log
scale, one group per chemical system, with the 90 % interval of the hit count divided by the core-minutes as the error
bar and each bar labelled with its hits. Several files can be given (a run split over processes); a system and
generator given by more than one file is an error, not an average.

    python benchmarks/plot_outcome.py benchmarks/discovery_prerelax_new.json \\
        --generators model:g=2,guided=e_above_hull,real=template,k=2 random:real=template,k=2 \\
        --labels model 'random search' --output docs/images/outcome_model_random.png
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Bar:
    chemsys: str
    label: str
    hits: int
    core_minutes: float
    rate: float
    """Hits per core-minute as the file states it (from the unrounded core-minutes)."""
    interval: tuple[float, float]


def outcome_bars(files: list[Path], generators: list[str], labels: list[str]) -> list[Bar]:
    """The outcome rows of ``generators`` in ``files``, systems in the order they first appear."""
    if len(labels) != len(generators):
        raise SystemExit(f'{len(labels)} labels for {len(generators)} generators: give one label per generator')
    rows: dict[tuple[str, str], dict] = {}
    for path in files:
        for row in json.loads(path.read_text()).get('outcome', []):
            key = (row['chemsys'], row['generator'])
            if row['generator'] not in generators:
                continue
            if key in rows:
                raise SystemExit(f'{row["generator"]} on {row["chemsys"]} is in more than one file: give each once')
            rows[key] = row
    found = {generator for _, generator in rows}
    if missing := [g for g in generators if g not in found]:
        raise SystemExit(f'no outcome rows of {", ".join(missing)} in {", ".join(map(str, files))}')
    systems = list(dict.fromkeys(chemsys for chemsys, _ in rows))
    return [
        Bar(chemsys, label, row['hits'], row['core_minutes'], row['hits_per_core_minute'],
            tuple(row['hits_interval_90']))
        for chemsys in systems
        for generator, label in zip(generators, labels, strict=True)
        if (row := rows.get((chemsys, generator))) and row['core_minutes'] > 0
    ]


def plot(bars: list[Bar], output: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(bar.chemsys for bar in bars))
    labels = list(dict.fromkeys(bar.label for bar in bars))
    width = 0.8 / len(labels)
    figure, axis = plt.subplots(figsize=(1.6 + 1.5 * len(systems), 3.6))
    for offset, label in enumerate(labels):
        chosen = [bar for bar in bars if bar.label == label]
        x = [systems.index(bar.chemsys) + (offset - (len(labels) - 1) / 2) * width for bar in chosen]
        scales = [bar.rate / bar.hits if bar.hits else 1 / bar.core_minutes for bar in chosen]
        low = [max(bar.rate - bar.interval[0] * scale, 0) for bar, scale in zip(chosen, scales, strict=True)]
        high = [bar.interval[1] * scale - bar.rate for bar, scale in zip(chosen, scales, strict=True)]
        axis.bar(x, [bar.rate for bar in chosen], width, yerr=[low, high], capsize=3, label=label)
        for position, top, bar in zip(x, high, chosen, strict=True):  # above the error bar, which it would hide
            axis.annotate(str(bar.hits), (position, bar.rate + top), textcoords='offset points', xytext=(0, 2),
                          ha='center', va='bottom', fontsize=8)
    axis.set_yscale('log')
    axis.set_xticks(range(len(systems)), systems)
    axis.set_ylabel('near-hull structures per core-minute')
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('files', nargs='+', type=Path, help='discovery.py result files with an outcome level')
    parser.add_argument('--generators', nargs='+', required=True, help='generator names as the files spell them')
    parser.add_argument('--labels', nargs='+', help='one legend label per generator [default: the names]')
    parser.add_argument('--title', default='near-hull structures (bar labels) per core-minute, 90 % interval')
    parser.add_argument('--output', type=Path, required=True, help='the PNG to write')
    arguments = parser.parse_args()
    for path in arguments.files:
        if not path.is_file():
            raise SystemExit(f'{path}: no such file')
    bars = outcome_bars(arguments.files, arguments.generators, arguments.labels or arguments.generators)
    plot(bars, arguments.output, arguments.title)
    for bar in bars:
        print(f'{bar.chemsys:10} {bar.label:20} {bar.hits:4d} hits {bar.core_minutes:6.2f} core-min {bar.rate:7.2f}')
    print(f'wrote {arguments.output}')


if __name__ == '__main__':
    main()
