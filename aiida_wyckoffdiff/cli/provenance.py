"""``wyckoffdiff lineage NODE``, ``wyckoffdiff metrics WORKCHAIN`` and ``wyckoffdiff relaxation-rows``: what the
provenance graph says about a structure, a run, and the relaxations a model can learn from."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .base import main


@main.command()
@click.argument('identifier', metavar='NODE')
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--json', 'as_json', is_flag=True, help='Print the steps as JSON.')
def lineage(identifier: str, profile_name: str | None, as_json: bool) -> None:
    """Print the conditions, seed, checkpoint and relaxer behind NODE (a pk or UUID of a structure)."""
    from aiida import load_profile, orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from ..provenance import lineage as trace

    load_profile(profile_name, allow_switch=True)
    try:
        node = orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.ClickException(f'no single node {identifier!r} in this profile: {exception}') from None
    steps = trace(node)
    if as_json:
        click.echo(json.dumps(steps, indent=1, default=str))
        return
    if not steps:
        raise click.ClickException(f'node {node.pk} ({node.node_type}) was not created by a process of this package')
    click.echo(f'{node.__class__.__name__}<{node.pk}> {getattr(node, "get_formula", lambda: "")()}')
    for depth, step in enumerate(steps, start=1):
        details = ', '.join(f'{key}={value}' for key, value in step.items() if key not in ('process', 'pk') and value is not None)
        click.echo(f'{"  " * depth}<- {step["process"]}<{step["pk"]}>: {details}')


@main.command()
@click.argument('identifier', metavar='WORKCHAIN')
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--stability', type=float, default=0.1, show_default=True, help='eV/atom above the hull that counts as stable.')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), help='Also write the report as JSON.')
def metrics(identifier: str, profile_name: str | None, stability: float, output: Path | None) -> None:
    """Score a finished phase-diagram WORKCHAIN: validity, uniqueness, novelty, S.U.N., symmetry kept, phases found."""
    from aiida import load_profile, orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from ..reporting import format_report, scan_report

    load_profile(profile_name, allow_switch=True)
    try:
        node = orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.ClickException(f'no single node {identifier!r} in this profile: {exception}') from None
    if node.process_type != 'aiida.workflows:wyckoffdiff.phase_diagram':
        raise click.ClickException(f'node {node.pk} is a {node.node_type}, not a wyckoffdiff.phase_diagram run')
    try:
        report = scan_report(node, stability=stability)
    except ValueError as exception:
        raise click.ClickException(str(exception)) from None
    click.echo(format_report(report), nl=False)
    if output:
        output.write_text(json.dumps(report, indent=1))
        click.echo(f'wrote {output}')


@main.command('relaxation-rows')
@click.option('--chemsys', help='Only runs of this chemical system, e.g. Li-O [default: every run].')
@click.option('--run', 'runs', type=int, multiple=True, help='Only this phase-diagram run (pk); repeat for several.')
@click.option('--potential', help='Only structures relaxed by this potential (rows of several are refused).')
@click.option('--include-pruned', is_flag=True,
              help='Keep structures whose relaxation was stopped early (their energy is not a relaxed one).')
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--output', '-o', type=click.Path(dir_okay=False, path_type=Path), default='relaxation-rows.jsonl.gz',
              show_default=True, help='Rows as the dataset file is written: `wyckoffdiff finetune --rows` reads them.')
def relaxation_rows(chemsys: str | None, runs: tuple[int, ...], potential: str | None, include_pruned: bool,
                    profile_name: str | None, output: Path) -> None:
    """Fine-tuning rows from the profile's finished phase-diagram runs: a row per relaxed protostructure label (its
    lowest e_above_hull against the reference hull), with the pks it came from."""
    import pandas as pd
    from aiida import load_profile

    from ..data import write_dataset
    from ..relaxation_rows import find_relaxations, training_rows

    load_profile(profile_name, allow_switch=True)
    sources = find_relaxations(chemsys=chemsys, runs=runs or None)
    try:
        report = training_rows(sources, potential=potential, include_pruned=include_pruned)
    except ValueError as exception:
        raise click.ClickException(str(exception)) from None
    write_dataset(pd.DataFrame(report.rows), output)
    click.echo(f'{report.summary()}, from runs {", ".join(str(source.run.pk) for source in sources)}')
    click.echo(f'wrote {output}')
