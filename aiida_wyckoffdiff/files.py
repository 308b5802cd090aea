"""File fingerprints and safe writes: how checkpoints are recognised wherever they travel, and results survive kills."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .exceptions import CheckpointError

__all__ = ['SHA256_MISMATCH', 'file_sha256', 'verify_sha256', 'write_atomically']

SHA256_MISMATCH = 'sha256 mismatch'
"""How a refused checkpoint's error begins; the CalcJob parsers look for it to give the 2xx exit code."""


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in blocks so multi-GB weights need not fit in memory."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Refuse a file whose content is not what was recorded, before anything loads it.

    :raises CheckpointError: the file was corrupted or swapped since its sha256 was recorded.
    """
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f'{SHA256_MISMATCH}: {path} has sha256 {actual}, expected {expected}: '
            'the file was corrupted or swapped, refusing to load it'
        )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step: a process killed while writing leaves the previous version, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.partial')
    partial.write_text(text)
    os.replace(partial, path)
