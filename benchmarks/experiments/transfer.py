"""Learn from the relaxations of other chemical systems, then sample unseen ones: does what a round learns carry over?

The rounds work chain fine-tunes on one system's own relaxations, and its second round then keeps the requested crystal
system more often (Cu-Nb-O 0.97 against 0.70, docs/rounds.md), but pays the fine-tuning and a spent library on that same
system. Here the relaxations come from other systems, chosen by a rule before any result: the largest binary and ternary
systems of the dataset that share no pair of elements with the systems evaluated (the discovery benchmark's four and
its two test-only ternaries). ``collect`` relaxes the shipped model's samples of some of them at the workflow's
defaults and writes the fine-tuning rows as the rounds work chain makes them (``rounds.finetuning_rows``);
``finetune`` fine-tunes the shipped checkpoint once on all collected rows mixed with the dataset
(``training.finetune_on_new_rows``), energy head included. The checkpoint is then compared with the shipped one by
``discovery.py --outcome ...,ckpt=FILE`` on the evaluated systems.

Usage::

    python benchmarks/experiments/transfer.py collect --part 0 --parts 2 --output rows0.json
    python benchmarks/experiments/transfer.py finetune rows0.json rows1.json --checkpoint transfer.pt --output summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from itertools import combinations
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from discovery import (  # benchmarks/discovery.py
    Context,
    as_generator,
    elemental_references,
    outcome_level,
    scan_spacegroups,
)
from rounds import MODEL, finetune_on, finetuning_rows  # benchmarks/rounds.py

EVALUATED = ('Er-Ni', 'Ti-O', 'Li-O', 'Cu-Nb-O', 'Ho-In-Mg', 'Cr-Dy-Ge')
"""The systems the checkpoint is judged on; no system sharing a pair of elements with one of them is learned from."""


def learning_systems(context: Context, binaries: int, ternaries: int) -> list[tuple[str, ...]]:
    """The largest systems of two and three elements (most dataset rows first) with references for every element,
    none sharing a pair of elements with :data:`EVALUATED`."""
    from aiida_wyckoffdiff.references import elements_with_references

    usable = elements_with_references(context.checkpoint.model_config.elements)
    banned = {frozenset(pair) for system in EVALUATED for pair in combinations(system.split('-'), 2)}
    sizes = context.frame.groupby('chemsys').size().sort_values(ascending=False, kind='stable')
    chosen: dict[int, list[tuple[str, ...]]] = {2: [], 3: []}
    wanted = {2: binaries, 3: ternaries}
    for chemsys in sizes.index:
        elements = tuple(chemsys.split('-'))
        arity = len(elements)
        if arity not in wanted or len(chosen[arity]) >= wanted[arity] or not set(elements) <= usable:
            continue
        if any(frozenset(pair) in banned for pair in combinations(elements, 2)):
            continue
        chosen[arity].append(elements)
    return chosen[2] + chosen[3]


def collect(arguments: argparse.Namespace) -> None:
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.relax import STAGED

    context = Context(arguments.seed)
    systems = learning_systems(context, arguments.binaries, arguments.ternaries)[arguments.part :: arguments.parts]
    potential = load_potential('chgnet')
    elemental = elemental_references(potential, systems)
    document: dict[str, Any] = {'systems': {}, 'rows': []}
    for system in systems:
        chemsys = '-'.join(system)
        relaxed: list[dict[str, Any]] = []
        row = outcome_level(context, as_generator(MODEL), system, arguments.samples, potential,
                            STAGED, elemental, 1, scan_spacegroups(system, 'chemistry'), relaxed=relaxed)
        rows = finetuning_rows(relaxed, chemsys)
        document['systems'][chemsys] = {key: row[key] for key in (
            'samples', 'relaxed', 'hits', 'core_minutes', 'hits_per_core_minute', 'median_e_above_hull',
            'hits_crystal_system_kept')} | {'rows': len(rows)}
        document['rows'] += rows
        print(chemsys, json.dumps(document['systems'][chemsys]), flush=True)
        arguments.output.write_text(json.dumps(document, indent=1))  # after every system: a killed run keeps them


def finetune(arguments: argparse.Namespace) -> None:
    context = Context(arguments.seed)
    documents = [json.loads(path.read_text()) for path in arguments.rows]
    rows = [row for document in documents for row in document['rows']]
    summary = finetune_on(context, rows, arguments.checkpoint, arguments.epochs, arguments.dataset_share,
                          arguments.val_rows)
    summary['systems'] = {chemsys: entry for document in documents for chemsys, entry in document['systems'].items()}
    print(json.dumps(summary, indent=1), flush=True)
    if arguments.output:
        arguments.output.write_text(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seed', type=int, default=0)
    commands = parser.add_subparsers(dest='command', required=True)
    gather = commands.add_parser('collect', help="Relax the shipped model's samples of some learning systems.")
    gather.add_argument('--binaries', type=int, default=6)
    gather.add_argument('--ternaries', type=int, default=4)
    gather.add_argument('--samples', type=int, default=64, help='Samples per system.')
    gather.add_argument('--part', type=int, default=0, help='This process takes every PARTS-th system from PART.')
    gather.add_argument('--parts', type=int, default=1)
    gather.add_argument('--output', type=Path, required=True, help='Rows and per-system outcomes (JSON).')
    tune = commands.add_parser('finetune', help='Fine-tune the shipped checkpoint on collected rows.')
    tune.add_argument('rows', nargs='+', type=Path)
    tune.add_argument('--checkpoint', type=Path, default=Path(tempfile.gettempdir()) / 'transfer.pt')
    tune.add_argument('--epochs', type=int, default=30)
    tune.add_argument('--dataset-share', type=float, default=0.5)
    tune.add_argument('--val-rows', type=int, default=256)
    tune.add_argument('--output', type=Path)
    arguments = parser.parse_args()
    if arguments.command == 'collect':
        collect(arguments)
    else:
        finetune(arguments)


if __name__ == '__main__':
    main()
