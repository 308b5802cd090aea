"""The ``wyckoffdiff`` command line: one click group, one module per topic.

Worker commands never load an AiiDA profile, so CalcJobs can run them on any computer.
"""

from __future__ import annotations

from .base import main
from . import data, dft, hull, model, provenance, relax, setup, structures  # noqa: E402,F401  (registers the subcommands)

__all__ = ['main']
