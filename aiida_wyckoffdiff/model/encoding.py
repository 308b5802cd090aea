"""Protostructures as tensors: the global Wyckoff position table, padded batches and their inverse.

Every crystal is a graph with one node per Wyckoff position of its space group, empty ones included.
A *fixed* position (no free coordinate) carries one categorical variable over ``V + 1`` classes
(0 = empty, ``k`` = the ``k``-th vocabulary element), so it can never hold more than one orbit; a
*free* position carries ``V`` categorical variables, the orbit count of each element (0..K).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import torch

from ..exceptions import ProtostructureError
from ..symmetry import NUM_SPACEGROUPS, Protostructure, wyckoff_positions

__all__ = [
    'MULTIPLICITIES',
    'NUM_POSITIONS',
    'EncodedCrystal',
    'PositionTable',
    'ProtoBatch',
    'collate',
    'decode',
    'encode',
    'position_table',
    'structure_tensors',
]

NUM_POSITIONS = 1731
"""Wyckoff positions summed over the 230 space groups in their standard settings."""
MULTIPLICITIES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 36, 48, 64, 96, 192)
"""Every multiplicity that occurs; the network embeds the index into this tuple."""


@dataclass(frozen=True)
class PositionTable:
    """Global numbering of the Wyckoff positions: group ``s`` owns ``offset[s] .. offset[s + 1] - 1``."""

    offset: np.ndarray  # (231,) int64, offset[s - 1] is the first index of group s
    dof: np.ndarray  # (1731,) int64, free coordinates 0..3
    multiplicity: np.ndarray  # (1731,) int64, sites per orbit in the conventional cell
    multiplicity_index: np.ndarray  # (1731,) int64, index into MULTIPLICITIES


@lru_cache(maxsize=1)
def position_table() -> PositionTable:
    """Read every group's Wyckoff table once (a few seconds through PyXtal)."""
    offset, dof, multiplicity = [0], [], []
    for spacegroup in range(1, NUM_SPACEGROUPS + 1):
        positions = wyckoff_positions(spacegroup)
        offset.append(offset[-1] + len(positions))
        dof.extend(position.dof for position in positions)
        multiplicity.extend(position.multiplicity for position in positions)
    multiplicity_array = np.array(multiplicity, dtype=np.int64)
    index = np.searchsorted(np.array(MULTIPLICITIES), multiplicity_array)
    return PositionTable(np.array(offset, dtype=np.int64), np.array(dof, dtype=np.int64), multiplicity_array, index)


@dataclass(frozen=True)
class EncodedCrystal:
    """One protostructure as the network's variables (numpy, unpadded)."""

    spacegroup: int
    fixed: np.ndarray  # (n,) bool, position without free coordinates
    multiplicity: np.ndarray  # (n,) int64
    x_fixed: np.ndarray  # (n,) int64 in 0..V, 0 on free positions
    x_count: np.ndarray  # (n, V) int64 in 0..K, 0 on fixed positions


def structure_tensors(spacegroup: int) -> tuple[np.ndarray, np.ndarray]:
    """``fixed`` (n,) bool and ``multiplicity`` (n,) int64 of the positions of a group, in order a, b, ..."""
    positions = wyckoff_positions(spacegroup)
    fixed = np.array([position.is_fixed for position in positions], dtype=bool)
    multiplicity = np.array([position.multiplicity for position in positions], dtype=np.int64)
    return fixed, multiplicity


def encode(protostructure: Protostructure, elements: Sequence[str], max_count: int) -> EncodedCrystal:
    """The variables of ``protostructure``; raises :class:`ProtostructureError` if it does not fit the vocabulary."""
    matrix = protostructure.element_matrix(elements)  # (n, V) orbit counts
    if matrix.max() > max_count:
        raise ProtostructureError(
            f'{protostructure.label} has {matrix.max()} orbits of one element on one position; the model counts to {max_count}'
        )
    fixed, multiplicity = structure_tensors(protostructure.spacegroup)
    occupied = matrix.sum(axis=1) > 0
    x_fixed = np.where(fixed & occupied, matrix.argmax(axis=1) + 1, 0).astype(np.int64)
    x_count = np.where(fixed[:, None], 0, matrix).astype(np.int64)
    return EncodedCrystal(protostructure.spacegroup, fixed, multiplicity, x_fixed, x_count)


def decode(spacegroup: int, x_fixed: np.ndarray, x_count: np.ndarray, elements: Sequence[str]) -> Protostructure:
    """Inverse of :func:`encode` for one crystal; raises :class:`ProtostructureError` when no atom is placed."""
    fixed, _ = structure_tensors(spacegroup)
    matrix = np.where(fixed[:, None], 0, x_count)
    rows = np.nonzero(fixed & (x_fixed > 0))[0]
    matrix[rows, x_fixed[rows] - 1] = 1
    return Protostructure.from_element_matrix(spacegroup, matrix, elements)


@dataclass
class ProtoBatch:
    """Crystals padded to the largest number of positions ``N`` in the batch."""

    spacegroup: torch.Tensor  # (B,) long, 1..230
    position: torch.Tensor  # (B, N) long, global position index, 0 on padding
    mask: torch.Tensor  # (B, N) bool, real position
    fixed: torch.Tensor  # (B, N) bool, real position without free coordinates
    multiplicity: torch.Tensor  # (B, N) long, 0 on padding
    x_fixed: torch.Tensor  # (B, N) long in 0..V
    x_count: torch.Tensor  # (B, N, V) long in 0..K

    def to(self, device: torch.device | str) -> ProtoBatch:
        return ProtoBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def replace_variables(self, x_fixed: torch.Tensor, x_count: torch.Tensor) -> ProtoBatch:
        """The same graphs with other occupations (noisy or sampled)."""
        return ProtoBatch(self.spacegroup, self.position, self.mask, self.fixed, self.multiplicity, x_fixed, x_count)

    @property
    def free(self) -> torch.Tensor:
        """(B, N) bool: real positions with free coordinates."""
        return self.mask & ~self.fixed


def collate(crystals: Sequence[EncodedCrystal], num_elements: int, offset: np.ndarray) -> ProtoBatch:
    """Pad ``crystals`` into one batch.

    :param offset: :attr:`PositionTable.offset`; a loaded model carries it, so sampling never reads all 230 tables.
    """
    size = max(len(crystal.fixed) for crystal in crystals)
    batch = len(crystals)
    position = np.zeros((batch, size), dtype=np.int64)
    mask = np.zeros((batch, size), dtype=bool)
    fixed = np.zeros((batch, size), dtype=bool)
    multiplicity = np.zeros((batch, size), dtype=np.int64)
    x_fixed = np.zeros((batch, size), dtype=np.int64)
    x_count = np.zeros((batch, size, num_elements), dtype=np.int64)
    for row, crystal in enumerate(crystals):
        n = len(crystal.fixed)
        position[row, :n] = offset[crystal.spacegroup - 1] + np.arange(n)
        mask[row, :n] = True
        fixed[row, :n] = crystal.fixed
        multiplicity[row, :n] = crystal.multiplicity
        x_fixed[row, :n] = crystal.x_fixed
        x_count[row, :n] = crystal.x_count
    return ProtoBatch(
        spacegroup=torch.tensor([crystal.spacegroup for crystal in crystals], dtype=torch.long),
        position=torch.from_numpy(position),
        mask=torch.from_numpy(mask),
        fixed=torch.from_numpy(fixed),
        multiplicity=torch.from_numpy(multiplicity),
        x_fixed=torch.from_numpy(x_fixed),
        x_count=torch.from_numpy(x_count),
    )
