"""Exceptions with messages meant for users: each names the offending input and what to do."""

from __future__ import annotations

__all__ = [
    'CheckpointError',
    'ConditionError',
    'ConfigurationError',
    'DataNotFoundError',
    'NoRelaxationsError',
    'ProtocolError',
    'ProtostructureError',
    'ReferenceDataError',
    'RelaxerError',
    'StructureFileError',
    'WyckoffDiffError',
]


class WyckoffDiffError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero instead of a traceback."""


class ProtostructureError(WyckoffDiffError, ValueError):
    """A space group, element, Wyckoff letter or protostructure label that cannot be right."""


class StructureFileError(WyckoffDiffError, ValueError):
    """A structure file that cannot be read, or that holds no atoms."""


class DataNotFoundError(WyckoffDiffError, FileNotFoundError):
    """The Materials Project data files are not where they were looked for."""


class ProtocolError(WyckoffDiffError, ValueError):
    """An unknown protocol, or an override the work chain has no input for."""


class RelaxerError(WyckoffDiffError):
    """A potential that cannot be loaded: unknown name, missing or unreadable checkpoint."""


class ReferenceDataError(WyckoffDiffError, ValueError):
    """A chemical system or element for which the reference phase data has no entry."""


class ConfigurationError(WyckoffDiffError, ValueError):
    """A model, training or sampling setting that cannot work (unknown preset, negative sizes, ...)."""


class CheckpointError(WyckoffDiffError):
    """A checkpoint that cannot be read, or that does not fit the model, data or request at hand."""


class ConditionError(WyckoffDiffError, ValueError):
    """A generation request the model cannot honour, e.g. an element outside its vocabulary."""


class NoRelaxationsError(WyckoffDiffError, LookupError):
    """The profile holds no finished phase-diagram run with relaxed structures to learn from."""
