"""File fingerprints: how checkpoints, potentials and datasets are recognised wherever they travel."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ['file_sha256']


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in blocks so multi-GB weights need not fit in memory."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
