"""``wyckoffdiff hull``: formation energies, e_above_hull, the results table and the paper's plots."""

from __future__ import annotations

from pathlib import Path

import click

from ..exceptions import RelaxerError
from .base import main


@main.command()
@click.argument('relaxed', type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar='RELAXED.jsonl')
@click.option('--output-dir', '-o', type=click.Path(file_okay=False, path_type=Path), default='hull', show_default=True)
@click.option('--checkpoint', help='Weights of the potential that relaxed RELAXED.jsonl, if not its default.')
@click.option('--device', default='cpu', show_default=True)
def hull(relaxed: Path, output_dir: Path, checkpoint: str | None, device: str) -> None:
    """Place the structures of RELAXED.jsonl (from ``wyckoffdiff relax``) on the MP convex hulls.

    Elemental references are relaxed with the same potential, whose checkpoint must hash to the one recorded in
    RELAXED.jsonl. Writes table.csv, table.json, a hull plot per two- or three-element system, the symmetry heatmap and
    entries.json: the table as pymatgen ComputedStructureEntry objects with the elemental references.
    """
    from ..hull import elemental_energies, elemental_entries, hull_entries, hull_rows, merge_duplicates, write_entries
    from ..plots import write_report
    from ..potentials import load_potential
    from ..references import elemental_references, elements_with_references
    from ..relax import RelaxOutcome
    from ..results_file import read_results

    try:
        document = read_results(relaxed.read_text())
    except ValueError as exception:
        raise click.BadParameter(f'{relaxed}: {exception}', param_hint='RELAXED.jsonl') from None
    potential = load_potential(document['potential'], checkpoint, device=device)
    if potential.checkpoint_sha256 != document['checkpoint_sha256']:
        raise RelaxerError(
            f'{relaxed} was relaxed with {document["potential"]} weights {document["checkpoint_sha256"][:12]}, but '
            f'{potential.checkpoint} hashes to {potential.checkpoint_sha256[:12]}: pass the same --checkpoint.'
        )
    if document.get('complete') is False:
        click.echo(
            f'warning: {relaxed} is from an interrupted relax run: only its {len(document["structures"])} finished '
            'structures are placed; relax the others and build the hull again for the rest',
            err=True,
        )
    outcomes = [RelaxOutcome.from_dict(entry) for entry in document['structures']]
    elements = {e.symbol for o in outcomes if o.structure is not None for e in o.structure.composition}
    elemental = elemental_energies(potential, sorted(elements_with_references(elements)))
    sources = {reference.element: reference.source for reference in elemental_references(elemental)}
    requested = [s.get('label_requested') for s in document['structures']]
    rows = hull_rows(outcomes, elemental, requested, apply_mp2020=not potential.includes_mp2020)
    structures, names = [outcome.structure for outcome in outcomes], [str(outcome.index) for outcome in outcomes]
    merge_duplicates(rows, structures, names)
    written = write_report(rows, elemental, output_dir, sources)
    entries = hull_entries(rows, structures, names, apply_mp2020=not potential.includes_mp2020)
    entries += elemental_entries(elemental, potential.name, potential.checkpoint_sha256, sources)
    written.append(write_entries(output_dir / 'entries.json', entries))
    for row in rows:
        if row.reason:
            click.echo(f'structure {row.index} ({row.formula or "-"}): {row.reason}', err=True)
    click.echo('wrote ' + ', '.join(str(p) for p in written), err=True)
