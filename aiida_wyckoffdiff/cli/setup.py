"""``wyckoffdiff setup``: the Computer and Code the CalcJobs need, in the current AiiDA profile."""

from __future__ import annotations

import click

from .base import main


@main.command()
@click.option('--profile', 'profile_name', default=None, help='AiiDA profile (default: the default profile).')
@click.option('--computer', 'computer_label', default='localhost', show_default=True)
@click.option('--code-label', default='wyckoffdiff', show_default=True)
@click.option(
    '--scheduler',
    type=click.Choice(['core.direct', 'core.slurm']),
    default='core.direct',
    show_default=True,
    help='For a new computer: run jobs directly, or through a Slurm on this machine.',
)
def setup(profile_name: str | None, computer_label: str, code_label: str, scheduler: str) -> None:
    """Create, if missing, the localhost Computer and the wyckoffdiff Code (safe to run again)."""
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError

    from ..codes import get_or_create_code, get_or_create_localhost

    try:
        profile = load_profile(profile_name, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exception:
        raise click.ClickException(f'no AiiDA profile to set up ({exception}): create one with `verdi presto`') from None
    try:
        computer = get_or_create_localhost(computer_label, scheduler=scheduler)
        code = get_or_create_code(computer, code_label)
    except (FileExistsError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from None
    click.echo(f'profile {profile.name}: computer {computer.label} (pk {computer.pk}), code {code.full_label} (pk {code.pk})')
