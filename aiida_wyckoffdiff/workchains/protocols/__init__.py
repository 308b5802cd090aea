"""Protocols: named sets of work-chain inputs shipped as YAML, the aiida-quantumespresso convention.

A protocol file holds ``default_protocol``, ``default_inputs`` (for every protocol) and ``protocols``, each with a
``description`` and the inputs it changes. ``overrides`` change any single input on top, checked against the work
chain's own ports so a misspelt key fails at once, naming the valid ones.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from plumpy.ports import PortNamespace

from ...exceptions import ProtocolError

__all__ = ['ProtocolMixin', 'merge_inputs']

PROTOCOLS_FOLDER = Path(__file__).parent


def merge_inputs(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied recursively: nested dictionaries merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_inputs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _load_protocol_file(name: str) -> dict[str, Any]:
    with open(PROTOCOLS_FOLDER / f'{name}.yaml', encoding='utf-8') as handle:
        return yaml.safe_load(handle)


class ProtocolMixin:
    """``get_protocol_inputs`` for a work chain whose protocols are ``protocols/<_protocol_file>.yaml``."""

    _protocol_file: str

    @classmethod
    def get_protocol_file(cls) -> dict[str, Any]:
        return _load_protocol_file(cls._protocol_file)

    @classmethod
    def get_default_protocol(cls) -> str:
        return cls.get_protocol_file()['default_protocol']

    @classmethod
    def get_available_protocols(cls) -> dict[str, dict[str, str]]:
        """Each protocol's name with its description."""
        return {name: {'description': values['description']} for name, values in cls.get_protocol_file()['protocols'].items()}

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The inputs of ``protocol`` (default: the file's default) with ``overrides`` applied, as plain values."""
        data = cls.get_protocol_file()
        protocol = protocol or data['default_protocol']
        if protocol not in data['protocols']:
            raise ProtocolError(f'unknown protocol {protocol!r} of {cls.__name__}; choose one of {", ".join(data["protocols"])}')
        chosen = {key: value for key, value in data['protocols'][protocol].items() if key != 'description'}
        inputs = merge_inputs(data['default_inputs'], chosen)
        if overrides:
            cls.check_overrides(overrides)
            inputs = merge_inputs(inputs, overrides)
        return inputs

    @classmethod
    def check_overrides(cls, overrides: dict[str, Any]) -> None:
        """Refuse keys that are not inputs of this work chain (recursing into its namespaces)."""
        _check_keys(overrides, cls.spec().inputs, cls.__name__)  # type: ignore[attr-defined]


def _check_keys(values: dict[str, Any], namespace: PortNamespace, where: str) -> None:
    """Strict even in dynamic namespaces: an exposed namespace is dynamic, yet a key it does not know is dropped."""
    for key, value in values.items():
        if key not in namespace:
            valid = ', '.join(sorted(name for name in namespace if name != 'metadata'))
            raise ProtocolError(f'{where} has no input {key!r}; valid: {valid}')
        port = namespace[key]
        if isinstance(port, PortNamespace) and isinstance(value, dict):
            _check_keys(value, port, f'{where}.{key}')
