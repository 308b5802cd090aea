"""The localhost Computer and the Code the CalcJobs run, created once per profile.

Every CalcJob of the package runs the ``wyckoffdiff`` console script of the environment the
package is installed in; a cluster user points a Code at the same script on the cluster instead
(docs/cluster.md).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from aiida import orm
from aiida.common.exceptions import NotExistent

__all__ = ['CODE_LABEL', 'PW_CODE_LABEL', 'get_or_create_code', 'get_or_create_localhost', 'get_or_create_pw_code', 'wyckoffdiff_executable']

CODE_LABEL = 'wyckoffdiff'
PW_CODE_LABEL = 'pw'


def wyckoffdiff_executable() -> Path:
    """The ``wyckoffdiff`` script beside this Python, else the one on ``PATH``."""
    beside = Path(sys.executable).parent / 'wyckoffdiff'
    if beside.is_file():
        return beside
    found = shutil.which('wyckoffdiff')
    if found is None:
        raise FileNotFoundError('no `wyckoffdiff` executable found: install the package (pip install -e .) in this environment')
    return Path(found)


def get_or_create_localhost(label: str = 'localhost', workdir: str | None = None, scheduler: str = 'core.direct') -> orm.Computer:
    """The Computer ``label`` if it exists (``verdi presto`` makes one), else a configured local one.

    :param scheduler: ``core.direct`` runs jobs as plain processes; ``core.slurm`` submits them to a Slurm on this
        machine (``scripts/slurm.sh`` starts one), the same path a cluster's jobs take.
    """
    try:
        computer = orm.load_computer(label)
    except NotExistent:
        computer = orm.Computer(
            label=label,
            hostname='localhost',
            description=f'Localhost ({scheduler}) created by `wyckoffdiff setup`',
            transport_type='core.local',
            scheduler_type=scheduler,
            workdir=workdir or str(Path(tempfile.gettempdir()) / 'aiida_wyckoffdiff_run'),
        ).store()
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
    if computer.scheduler_type != scheduler:
        raise FileExistsError(
            f'computer {label} submits through {computer.scheduler_type}, not {scheduler}: pass another --computer label'
        )
    if not computer.is_configured:
        computer.configure(safe_interval=0)
    return computer


def get_or_create_code(
    computer: orm.Computer,
    label: str = CODE_LABEL,
    executable: Path | None = None,
    plugin: str | None = None,
    description: str = 'The wyckoffdiff command line of aiida-wyckoffdiff',
) -> orm.InstalledCode:
    """The Code ``label@computer`` running ``executable`` (default: this environment's ``wyckoffdiff``).

    An existing code of that label that runs another executable is an error, not silently reused.
    """
    executable = str(executable or wyckoffdiff_executable())
    try:
        code = orm.load_code(f'{label}@{computer.label}')
    except NotExistent:
        return orm.InstalledCode(
            computer=computer,
            filepath_executable=executable,
            label=label,
            default_calc_job_plugin=plugin,
            description=description,
        ).store()
    if str(code.filepath_executable) != executable:
        raise FileExistsError(
            f'code {label}@{computer.label} runs {code.filepath_executable}, not this environment\'s {executable}: '
            f'pass another --code-label or delete it with `verdi code delete {code.pk}`'
        )
    return code


def get_or_create_pw_code(computer: orm.Computer, label: str = PW_CODE_LABEL, executable: Path | None = None) -> orm.InstalledCode:
    """The Quantum ESPRESSO ``pw.x`` Code ``label@computer`` for the DFT follow-up (``pw.x`` on ``PATH`` by default)."""
    if executable is None:
        found = shutil.which('pw.x')
        if found is None:
            raise FileNotFoundError('no `pw.x` on PATH: install Quantum ESPRESSO (Debian: scripts/install-qe.sh) or pass its path')
        executable = Path(found)
    return get_or_create_code(computer, label, executable, 'quantumespresso.pw', 'Quantum ESPRESSO pw.x for wyckoffdiff.dft_hull')
