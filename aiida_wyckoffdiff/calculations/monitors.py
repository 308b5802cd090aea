"""CalcJob monitors (aiida-core 2.x ``monitors`` input): progress of a running relax job in its process report."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from aiida import orm
from aiida.transports import Transport

from ..results_file import progress, read_results

__all__ = ['PROGRESS_EXTRA', 'relax_progress']

PROGRESS_EXTRA = 'progress'
"""Extra of the CalcJobNode holding the last progress line reported, so an unchanged count is not repeated."""


def relax_progress(node: orm.CalcJobNode, transport: Transport) -> str | None:
    """Report ``relaxed 17 of 36 (3 pruned, 1 failed)`` from the job's results file when the count has changed.

    The file is appended per finished structure, so what it holds is exactly what the job has finished. Returns
    ``None`` always: a monitor's message would kill the job, and progress is no reason to.
    """
    from ..calculations.relax import RelaxCalculation

    workdir = node.get_remote_workdir()
    if workdir is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / RelaxCalculation.FILENAME_RESULTS
        try:
            transport.getfile(str(PurePosixPath(workdir) / RelaxCalculation.FILENAME_RESULTS), str(local))
            document = read_results(local.read_text())
        except (OSError, ValueError):  # not written yet, or only part of its header so far
            return None
    message = progress(document)
    if node.base.extras.get(PROGRESS_EXTRA, None) != message:
        node.base.extras.set(PROGRESS_EXTRA, message)
        node.logger.report(message)
    return None
