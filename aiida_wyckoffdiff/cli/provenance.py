"""``wyckoffdiff lineage NODE`` and ``wyckoffdiff metrics WORKCHAIN``: what the provenance graph says about a structure and a run."""

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
