"""AiiDA data types of the package.

``CheckpointData`` stores a model or potential checkpoint once, with its sha256, so that every
process that used the weights links to the same node and a provenance query can answer
"everything this checkpoint produced".
"""

from __future__ import annotations

from pathlib import Path

from aiida import orm

from .files import file_sha256

__all__ = ['CheckpointData']


class CheckpointData(orm.SinglefileData):
    """A checkpoint file plus its ``sha256`` and ``kind`` (``wyckoffdiff``, ``mattersim``, ``chgnet``, ...)."""

    def __init__(self, file: str | Path, kind: str, **kwargs) -> None:
        super().__init__(file=file, **kwargs)
        self.base.attributes.set('kind', kind)
        self.base.attributes.set('sha256', file_sha256(file))

    @property
    def kind(self) -> str:
        return self.base.attributes.get('kind')

    @property
    def sha256(self) -> str:
        return self.base.attributes.get('sha256')

    @classmethod
    def get_or_create(cls, file: str | Path, kind: str) -> CheckpointData:
        """The stored node holding these exact bytes, or a new stored one: the same weights are never stored twice."""
        digest = file_sha256(file)
        builder = orm.QueryBuilder().append(cls, filters={'attributes.sha256': digest, 'attributes.kind': kind})
        existing = builder.first(flat=True)
        return existing if existing is not None else cls(file=file, kind=kind).store()
