"""AiiDA data types of the package.

``CheckpointData`` stores a model or potential checkpoint once, with its sha256, so that every
process that used the weights links to the same node and a provenance query can answer
"everything this checkpoint produced".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiida import orm

from .files import SHA256_MISMATCH, file_sha256

__all__ = ['CheckpointData', 'dataset_file', 'validate_checkpoint']


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

    def content_sha256(self) -> str:
        """sha256 of the bytes the repository holds now, read in blocks."""
        digest = hashlib.sha256()
        with self.open(mode='rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
        return digest.hexdigest()

    def mismatch(self) -> str | None:
        """Why these bytes are not the weights whose sha256 was recorded (corrupted or swapped), or ``None``."""
        actual = self.content_sha256()
        if actual == self.sha256:
            return None
        return (f'{SHA256_MISMATCH}: {type(self).__name__}<{self.pk}> ({self.filename}) holds bytes with sha256 '
                f'{actual}, but recorded {self.sha256}: the file was corrupted or swapped; store the right file again')

    @classmethod
    def get_or_create(cls, file: str | Path, kind: str) -> CheckpointData:
        """The stored node holding these exact bytes, or a new stored one: the same weights are never stored twice."""
        digest = file_sha256(file)
        builder = orm.QueryBuilder().append(cls, filters={'attributes.sha256': digest, 'attributes.kind': kind})
        existing = builder.first(flat=True)
        return existing if existing is not None else cls(file=file, kind=kind).store()


def dataset_file(path: str | Path) -> orm.SinglefileData:
    """The protostructure dataset file as a stored node (attribute ``sha256``), stored once per content like the
    checkpoints: a fine-tuning step takes it as an input, so the graph says which real crystals it mixed in.

    :raises DataNotFoundError: there is no file at ``path``.
    """
    from .exceptions import DataNotFoundError

    if not Path(path).is_file():
        raise DataNotFoundError(f'no protostructure dataset at {path}: run `wyckoffdiff data build` first')
    digest = file_sha256(path)
    builder = orm.QueryBuilder().append(orm.SinglefileData, subclassing=False, filters={'attributes.sha256': digest})
    existing = builder.first(flat=True)
    if existing is not None:
        return existing
    node = orm.SinglefileData(file=path)
    node.base.attributes.set('sha256', digest)
    return node.store()


def validate_checkpoint(value: CheckpointData | None, _: object) -> str | None:
    """Port validator: a checkpoint whose bytes do not match its sha256 is refused at launch, before any job starts."""
    return None if value is None else value.mismatch()
