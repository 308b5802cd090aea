"""Reading what a ``wyckoffdiff`` subcommand left behind: its results JSON and its one-line errors."""

from __future__ import annotations

import json
from typing import Any

from aiida.engine import ExitCode
from aiida.parsers import Parser

from ..files import SHA256_MISMATCH

__all__ = ['WyckoffDiffParser']


class WyckoffDiffParser(Parser):
    """Base parser: :meth:`read_results` returns the JSON document or the exit code that explains its absence."""

    CACHE_VERSION = 1
    """Bump when the outputs attached change, so cached results of the old parser are not reused."""

    def _retrieved_text(self, name: str) -> str:
        try:
            return self.retrieved.base.repository.get_object_content(name, mode='r')
        except (FileNotFoundError, OSError):
            return ''

    def read_results(self) -> dict[str, Any] | ExitCode:
        calc = self.node.process_class
        stderr = self._retrieved_text(calc.FILENAME_STDERR)
        errors = [line.removeprefix('Error:').strip() for line in stderr.splitlines() if line.startswith('Error:')]
        text = self._retrieved_text(calc.FILENAME_RESULTS)
        if not text:
            if errors and errors[-1].startswith(SHA256_MISMATCH):
                return self.exit_codes.ERROR_CHECKPOINT_MISMATCH.format(error=errors[-1])
            if errors:
                return self.exit_codes.ERROR_COMMAND_REFUSED_INPUT.format(error=errors[-1])
            tail = ' | '.join(stderr.strip().splitlines()[-5:]) or '(empty)'
            return self.exit_codes.ERROR_OUTPUT_MISSING.format(stderr=tail)
        try:
            return self.decode(text)
        except ValueError as exception:  # json.JSONDecodeError is one
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(exception=exception)

    @staticmethod
    def decode(text: str) -> dict[str, Any]:
        """The results document from the file's text; raises ``ValueError`` when it is not one."""
        return json.loads(text)
