"""Parser of ``wyckoffdiff.generate``: the samples document and the list of labels."""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode

from .base import WyckoffDiffParser

__all__ = ['GenerateParser']


class GenerateParser(WyckoffDiffParser):
    def parse(self, **kwargs) -> ExitCode | None:  # noqa: ANN003 - aiida-core passes retrieved folders by keyword
        document = self.read_results()
        if isinstance(document, ExitCode):
            return document
        samples = document.get('samples', [])
        self.out('samples', orm.Dict(document))
        self.out('protostructures', orm.List([sample['protostructure'] for sample in samples]))
        if not samples:
            meta = document.get('meta', {})
            detail = f"{meta.get('num_drawn', '?')} drawn, {meta.get('num_failed', '?')} failed, rejected: {meta.get('rejected')}"
            return self.exit_codes.ERROR_NO_SAMPLES.format(detail=detail)
        return None
