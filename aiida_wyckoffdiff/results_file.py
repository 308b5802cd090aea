"""The results file of ``wyckoffdiff relax``: JSON Lines, appended one line per finished structure.

Appending costs one line per structure where rewriting the whole document cost the whole file each time, and a job
killed midway leaves every line it finished (a line cut short by the kill is ignored). Line kinds: one ``header``
(potential, checkpoint, settings, the number of inputs), a ``structure`` per finished input, at most one
``elemental`` (the reference energies pruning and the free stage measured against) and ``complete`` when the
command got to the end. :func:`read_results` turns them back into one document; it also reads the one JSON document
the command wrote before (``relaxed.json``), so older results still reach ``wyckoffdiff hull``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

__all__ = ['HEADER_FIELDS', 'STRUCTURE_FIELDS', 'ResultsWriter', 'progress', 'read_results']

HEADER_FIELDS = ('potential', 'checkpoint_sha256')
"""What a header must name: the potential and the weights the hull reloads and checks."""
STRUCTURE_FIELDS = ('index', 'formula', 'potential', 'checkpoint_sha256')
"""What a structure line must hold: its input's position and what ``RelaxOutcome.from_dict`` cannot default."""


class ResultsWriter:
    """Append-only writer; each line is flushed to disk before the next structure is reported."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self._handle: TextIO = open(path, 'w', encoding='utf-8')  # noqa: SIM115 - closed in ``close``
        self.write('header', header)

    def write(self, kind: str, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps({'kind': kind, **record}) + '\n')
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self, complete: bool) -> None:
        if complete:
            self.write('complete', {})
        self._handle.close()


def read_results(text: str) -> dict[str, Any]:
    """One document from the lines: the header's keys plus ``structures`` (in input order), ``complete`` and, where
    written, ``elemental_energies`` and ``references``.

    :raises ValueError: naming the line, where no header can be read (not a results file) or a line lacks a field of
        ``HEADER_FIELDS`` or ``STRUCTURE_FIELDS``.
    """
    if (document := _single_document(text)) is not None:
        return document
    document = None
    lines = text.splitlines()
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1 and document is not None:
                break  # the line a killed job was writing
            raise ValueError(f'line {number + 1} of the relax results is not JSON: {line[:80]!r}') from None
        kind = record.pop('kind', None)
        required = {'header': HEADER_FIELDS, 'structure': STRUCTURE_FIELDS}.get(kind, ())
        _require(record, required, f'line {number + 1} ({kind})')
        if kind == 'header':
            document = {**record, 'structures': [], 'complete': False}
        elif document is None:
            raise ValueError('the relax results do not start with a header line')
        elif kind == 'structure':
            document['structures'].append(record)
        elif kind == 'elemental':
            document.update(record)
        elif kind == 'complete':
            document['complete'] = True
        else:
            raise ValueError(f'line {number + 1} of the relax results has unknown kind {kind!r}')
    if document is None:
        raise ValueError('the relax results hold no header line')
    document['structures'].sort(key=lambda entry: entry['index'])  # lines come in the order structures finished
    return document


def _single_document(text: str) -> dict[str, Any] | None:
    """The relax command's results before JSON Lines: one document of the header's keys, ``complete`` and
    ``structures``; ``None`` where ``text`` is not that (JSON Lines of more than one line are not one document)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict) or 'kind' in document:
        return None
    _require(document, (*HEADER_FIELDS, 'structures'), 'the document')
    for number, entry in enumerate(document['structures']):
        _require(entry, STRUCTURE_FIELDS, f'structure {number + 1}')
    return {'complete': False, **document}


def _require(record: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    if missing := [name for name in fields if name not in record]:
        raise ValueError(f'{where} of the relax results lacks {", ".join(missing)}')


def progress(document: dict[str, Any]) -> str:
    """``relaxed 17 of 36 (3 pruned, 1 failed)``: how far a (running) relax job has got."""
    structures = document['structures']
    pruned = sum(entry.get('pruned') is not None for entry in structures)
    failed = sum(entry.get('reason') is not None for entry in structures)
    return f'relaxed {len(structures)} of {document.get("inputs", "?")} ({pruned} pruned, {failed} failed)'
