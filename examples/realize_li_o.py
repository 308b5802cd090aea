"""Realize every known Li-O protostructure of the Materials Project data as a CIF.

The most complete path the package has until the phase-diagram workflow lands: build (or reuse)
the protostructure dataset, take the protostructures of one chemical system (its elements
included), realize each with PyXtal under the symmetry check, and write CIFs plus a summary.

    python examples/realize_li_o.py [--chemsys Li-O] [--output results/Li-O] [--seed 0]
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import click

from aiida_wyckoffdiff.data import build_dataset, default_dataset_path, find_data_dir, load_dataset
from aiida_wyckoffdiff.realize import realize_many
from aiida_wyckoffdiff.symmetry import Protostructure


def subsystems(chemsys: str) -> set[str]:
    """Li-O -> {Li, O, Li-O}: the phases a phase diagram of the system needs."""
    elements = sorted(chemsys.split('-'))
    return {'-'.join(combo) for size in range(1, len(elements) + 1) for combo in combinations(elements, size)}


@click.command()
@click.option('--chemsys', default='Li-O', show_default=True)
@click.option('--output', type=click.Path(file_okay=False, path_type=Path), default=None, help='Default: results/CHEMSYS')
@click.option('--seed', default=0, show_default=True)
def main(chemsys: str, output: Path | None, seed: int) -> None:
    folder = find_data_dir()
    dataset = default_dataset_path(folder)
    if not dataset.is_file():
        click.echo(build_dataset(folder).summary())
    table = load_dataset(dataset)
    chosen = table[table['chemsys'].isin(subsystems(chemsys))].drop_duplicates('label')
    if chosen.empty:
        raise click.ClickException(f'no protostructures of {chemsys} in the dataset')
    protostructures = [Protostructure.from_label(label) for label in chosen['label']]
    click.echo(f'{len(protostructures)} distinct protostructures in {chemsys} and its subsystems')
    results = realize_many(protostructures, seed=seed)
    output = output or Path('results') / chemsys
    output.mkdir(parents=True, exist_ok=True)
    summary = []
    for result, row in zip(results, chosen.itertuples(), strict=True):
        entry = {'label': result.protostructure.label, 'material_id': row.material_id, 'attempts': result.attempts}
        if result.ok:
            path = output / f'{row.material_id}.cif'
            result.structure.to(filename=str(path), fmt='cif')
            entry['cif'] = path.name
        else:
            entry['reason'] = result.reason
        summary.append(entry)
        click.echo(f"{'ok ' if result.ok else 'FAIL'} {result.attempts:3d} attempts  {entry['label']}  ({row.material_id})")
    (output / 'summary.json').write_text(json.dumps({'chemsys': chemsys, 'seed': seed, 'results': summary}, indent=2))
    click.echo(f'{sum(r.ok for r in results)}/{len(results)} realized; CIFs and summary.json in {output}')


if __name__ == '__main__':
    main()
