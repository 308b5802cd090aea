"""What every CalcJob of the package shares: it runs one ``wyckoffdiff`` subcommand on the remote.

The remote side needs nothing but the package: one command line, input files written here, one
JSON results file back. Exit codes follow the house ranges: 3xx the output is missing or
unreadable (never cached), 4xx the job ran but produced nothing usable, 7xx warnings with
results attached; 203 a checkpoint whose sha256 on the remote is not the recorded one (the command
checks it before loading).
"""

from __future__ import annotations

from aiida import orm
from aiida.common.datastructures import CalcInfo, CodeInfo
from aiida.engine import CalcJob, CalcJobProcessSpec

__all__ = ['WyckoffDiffCalculation']


class WyckoffDiffCalculation(CalcJob):
    """Base class: defaults for resources, the stdout/stderr files and the shared exit codes."""

    CACHE_VERSION = 1
    """Bump when the files written or the command run change, so old results stop being cache sources."""

    FILENAME_STDOUT = 'stdout.txt'
    FILENAME_STDERR = 'stderr.txt'
    FILENAME_RESULTS = 'results.json'
    """What the subcommand writes with ``--output``; the parser reads only this and stderr."""

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['withmpi'].default = False
        spec.exit_code(
            203, 'ERROR_CHECKPOINT_MISMATCH', invalidates_cache=True,
            message='The checkpoint arrived corrupted or swapped and was not loaded: {error}',
        )
        spec.exit_code(
            300, 'ERROR_OUTPUT_MISSING', invalidates_cache=True,
            message='The job wrote no results file. Last lines of stderr: {stderr}',
        )
        spec.exit_code(
            301, 'ERROR_OUTPUT_UNREADABLE', invalidates_cache=True,
            message='The results file is not valid JSON: {exception}',
        )
        spec.exit_code(
            302, 'ERROR_COMMAND_REFUSED_INPUT', invalidates_cache=True,
            message='wyckoffdiff refused the input: {error}',
        )

    def make_calcinfo(self, cmdline_params: list[str], local_copy_list: list | None = None) -> CalcInfo:
        """One code run of ``cmdline_params``, retrieving the results file and the logs."""
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [*cmdline_params, '--output', self.FILENAME_RESULTS]
        codeinfo.stdout_name = self.FILENAME_STDOUT
        codeinfo.stderr_name = self.FILENAME_STDERR
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list or []
        calcinfo.retrieve_list = [self.FILENAME_RESULTS, self.FILENAME_STDOUT, self.FILENAME_STDERR]
        return calcinfo

    @staticmethod
    def checkpoint_copy(node: orm.SinglefileData, name: str) -> tuple[str, str, str]:
        """``local_copy_list`` entry that puts a stored checkpoint into the working directory as ``name``."""
        return (node.uuid, node.filename, name)
