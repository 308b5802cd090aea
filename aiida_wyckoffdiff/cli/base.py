"""The root group and the error handling every subcommand shares."""

from __future__ import annotations

from typing import Any

import click

from ..exceptions import WyckoffDiffError


class WyckoffDiffGroup(click.Group):
    """Turns the package's own exceptions into a one-line ``Error:`` and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WyckoffDiffError as exception:
            raise click.ClickException(str(exception)) from None


@click.group(cls=WyckoffDiffGroup, context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(package_name='aiida-wyckoffdiff')
def main() -> None:
    """Symmetry-aware crystal generation: protostructures, realization, relaxation, phase diagrams."""


SHA256_OPTION = click.option(
    '--checkpoint-sha256',
    help='Refuse the checkpoint unless its sha256 is this: what the CalcJobs pass, so weights corrupted or swapped '
    'on the way to the cluster are never loaded.',
)
