"""MatterGen-style adapters: conditions enter the base network as zero-initialised residual mixins.

Before message-passing layer ``l`` each condition ``c`` adds ``mask_c * Mixin_c(MLP_c([h, e_c]))`` to the
node states. ``Mixin`` is a bias-free linear layer that starts at zero, so a freshly adapted model is
exactly the base model, and a crystal whose conditions are masked (dropped for classifier-free guidance,
or not requested) always goes through the base path.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields

import torch
from torch import nn

__all__ = ['Condition', 'ConditionAdapters', 'Conditions', 'sinusoidal_features']


def sinusoidal_features(values: torch.Tensor, size: int, max_period: float) -> torch.Tensor:
    """Transformer-style features of a float tensor ``(...)``: ``(..., size)``, periods from 1 to ``max_period``."""
    half = size // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float()[..., None] * frequencies
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class Condition(enum.IntEnum):
    """Column of :attr:`Conditions.mask`."""

    CHEMSYS = 0
    SPACEGROUP = 1
    E_ABOVE_HULL = 2


@dataclass
class Conditions:
    """Adapter inputs for a batch of ``B`` crystals."""

    chemsys: torch.Tensor  # (B, V) float multi-hot over the vocabulary
    spacegroup: torch.Tensor  # (B,) long, 1..230
    e_above_hull: torch.Tensor  # (B,) float, eV/atom
    mask: torch.Tensor  # (B, 3) float, 1 where the condition is given (columns: Condition)

    def to(self, device: torch.device | str) -> Conditions:
        return Conditions(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def masked(self, keep: torch.Tensor) -> Conditions:
        """The same conditions with ``mask`` multiplied by ``keep`` (B, 3)."""
        return Conditions(self.chemsys, self.spacegroup, self.e_above_hull, self.mask * keep)


class ConditionAdapters(nn.Module):
    """Embeddings of the three conditions and, per layer and condition, an MLP plus a zero-initialised mixin."""

    def __init__(
        self,
        num_elements: int,
        hidden_dim: int,
        adapter_dim: int,
        num_layers: int,
        e_above_hull_mean: float = 0.0,
        e_above_hull_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.adapter_dim = adapter_dim
        self.chemsys_embedding = nn.Linear(num_elements, adapter_dim)
        self.spacegroup_embedding = nn.Embedding(231, adapter_dim)
        self.e_above_hull_embedding = nn.Linear(adapter_dim, adapter_dim)
        self.register_buffer('e_above_hull_mean', torch.tensor(float(e_above_hull_mean)))
        self.register_buffer('e_above_hull_std', torch.tensor(float(e_above_hull_std)))
        self.mlps = nn.ModuleList(
            nn.ModuleList(
                nn.Sequential(
                    nn.Linear(hidden_dim + adapter_dim, adapter_dim), nn.SiLU(), nn.Linear(adapter_dim, adapter_dim)
                )
                for _ in Condition
            )
            for _ in range(num_layers)
        )
        self.mixins = nn.ModuleList(
            nn.ModuleList(nn.Linear(adapter_dim, hidden_dim, bias=False) for _ in Condition) for _ in range(num_layers)
        )
        for layer in self.mixins:
            for mixin in layer:
                nn.init.zeros_(mixin.weight)

    def embed(self, conditions: Conditions) -> torch.Tensor:
        """(B, 3, A): one embedding per condition, in :class:`Condition` order."""
        standardized = (conditions.e_above_hull - self.e_above_hull_mean) / self.e_above_hull_std
        return torch.stack(
            [
                self.chemsys_embedding(conditions.chemsys),
                self.spacegroup_embedding(conditions.spacegroup),
                self.e_above_hull_embedding(sinusoidal_features(standardized, self.adapter_dim, 100.0)),
            ],
            dim=1,
        )

    def forward(self, layer: int, h: torch.Tensor, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``h`` (B, N, H) plus the masked adapter outputs of every condition before layer ``layer``."""
        nodes = h.shape[1]
        for condition in Condition:
            e = embedded[:, condition, None, :].expand(-1, nodes, -1)  # (B, N, A)
            update = self.mixins[layer][condition](self.mlps[layer][condition](torch.cat([h, e], dim=-1)))
            h = h + mask[:, condition, None, None] * update
        return h
