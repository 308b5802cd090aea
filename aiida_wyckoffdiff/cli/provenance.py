"""``wyckoffdiff lineage NODE``: where a structure came from, in the words of its provenance graph."""

from __future__ import annotations

import json

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
