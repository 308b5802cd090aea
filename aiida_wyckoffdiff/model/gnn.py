"""WyckoffGNN: the denoiser, an attention network over the Wyckoff positions of one space group.

Each crystal is a complete graph with self-loops over all positions of its group (empty ones too).
Node states start from the occupation (element class on fixed positions, count vector on free ones);
a per-node condition vector sums embeddings of dof, global position index, multiplicity, space group
and diffusion time. Two rewrites make the message passing cheap and stay exact: the value MLP of
``h_j`` runs once per node instead of once per edge, and the first linear layer of the attention MLP on
``[u_i, u_j]`` is split into two per-node halves that are added per edge.
"""

from __future__ import annotations

import torch
from torch import nn

from .adapters import ConditionAdapters, Conditions, sinusoidal_features
from .config import ModelConfig
from .encoding import MULTIPLICITIES, NUM_POSITIONS, ProtoBatch, position_table

__all__ = ['AttentionLayer', 'WyckoffGNN']

MAX_DOF = 3


class AttentionLayer(nn.Module):
    """``h_i += W_o SiLU(sum_j softmax_j(MLP_a([u_i, u_j])) MLP_v(u_j))`` with ``u = [LayerNorm(h), c]``."""

    def __init__(self, hidden_dim: int, condition_dim: int) -> None:
        super().__init__()
        width = hidden_dim + condition_dim
        self.norm = nn.LayerNorm(hidden_dim)
        # First layer of the attention MLP, split: W [u_i; u_j] + b = (W_i u_i + b) + W_j u_j.
        self.attention_query = nn.Linear(width, hidden_dim)
        self.attention_key = nn.Linear(width, hidden_dim, bias=False)
        self.attention_score = nn.Linear(hidden_dim, 1)
        self.value = nn.Sequential(nn.Linear(width, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.output = nn.Linear(hidden_dim, hidden_dim)

    def attention_logits(self, u: torch.Tensor) -> torch.Tensor:
        """(B, N, N) unnormalised attention of node i (row) on node j (column)."""
        pair = self.attention_query(u)[:, :, None, :] + self.attention_key(u)[:, None, :, :]  # (B, N, N, H)
        return self.attention_score(nn.functional.silu(pair)).squeeze(-1)

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = torch.cat([self.norm(h), c], dim=-1)  # (B, N, H + C)
        logits = self.attention_logits(u).masked_fill(~mask[:, None, :], float('-inf'))
        weights = torch.softmax(logits, dim=-1)  # (B, N, N), rows sum to one over real neighbours
        messages = weights @ self.value(u)  # (B, N, H): value MLP once per node
        return h + self.output(nn.functional.silu(messages))


class WyckoffGNN(nn.Module):
    """Predicts the clean occupation (logits over x0) of every position from a noisy one.

    The Wyckoff table of all 230 groups lives in buffers, so a loaded model needs no table look-up.
    """

    def __init__(self, config: ModelConfig, *, fill_tables: bool = True) -> None:
        super().__init__()
        num_elements = len(config.elements)
        num_counts = config.max_count + 1
        hidden, cond = config.hidden_dim, config.condition_dim
        self.num_elements, self.num_counts, self.num_timesteps = num_elements, num_counts, config.num_timesteps
        self.condition_dim = cond
        self.fixed_embedding = nn.Embedding(num_elements + 1, hidden)
        # Sum over elements of an embedding of (element, count): a linear map of the flattened one-hot count matrix.
        self.count_embedding = nn.EmbeddingBag(num_elements * num_counts, hidden, mode='sum')
        self.dof_embedding = nn.Embedding(MAX_DOF + 1, cond)
        self.position_embedding = nn.Embedding(NUM_POSITIONS, cond)
        self.multiplicity_embedding = nn.Embedding(len(MULTIPLICITIES), cond)
        self.spacegroup_embedding = nn.Embedding(231, cond)
        self.time_embedding = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.layers = nn.ModuleList(AttentionLayer(hidden, cond) for _ in range(config.num_layers))
        self.fixed_head = nn.Sequential(
            nn.Linear(hidden + cond, hidden), nn.SiLU(), nn.Linear(hidden, num_elements + 1)
        )
        self.count_head = nn.Sequential(
            nn.Linear(hidden + cond, hidden), nn.SiLU(), nn.Linear(hidden, num_elements * num_counts)
        )
        self.adapters: ConditionAdapters | None = None
        self.register_buffer('position_offset', torch.zeros(231, dtype=torch.long))
        self.register_buffer('position_dof', torch.zeros(NUM_POSITIONS, dtype=torch.long))
        self.register_buffer('position_multiplicity_index', torch.zeros(NUM_POSITIONS, dtype=torch.long))
        if fill_tables:
            table = position_table()
            self.position_offset.copy_(torch.from_numpy(table.offset))
            self.position_dof.copy_(torch.from_numpy(table.dof))
            self.position_multiplicity_index.copy_(torch.from_numpy(table.multiplicity_index))

    def node_conditions(self, batch: ProtoBatch, t: torch.Tensor) -> torch.Tensor:
        """(B, N, C): embeddings of dof, position, multiplicity, space group and time, summed."""
        position = batch.position
        time = self.time_embedding(sinusoidal_features(t, self.condition_dim, self.num_timesteps))
        return (
            self.dof_embedding(self.position_dof[position])
            + self.position_embedding(position)
            + self.multiplicity_embedding(self.position_multiplicity_index[position])
            + (self.spacegroup_embedding(batch.spacegroup) + time)[:, None, :]
        )

    def node_inputs(self, batch: ProtoBatch) -> torch.Tensor:
        """(B, N, H): element class embedding on fixed positions, count vector embedding on free ones."""
        size, nodes, num_elements = batch.x_count.shape
        flat = batch.x_count.reshape(size * nodes, num_elements)
        index = flat + torch.arange(num_elements, device=flat.device) * self.num_counts  # (B * N, V) into V * (K + 1)
        counts = self.count_embedding(index).reshape(size, nodes, -1)
        return torch.where(batch.fixed[..., None], self.fixed_embedding(batch.x_fixed), counts)

    def hidden_states(
        self, batch: ProtoBatch, t: torch.Tensor, conditions: Conditions | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node states ``(B, N, H)`` after the last layer and node conditions ``(B, N, C)``: what the heads read, and
        what :mod:`.energy` pools into a protostructure's features."""
        c = self.node_conditions(batch, t)
        h = self.node_inputs(batch)
        use_adapters = self.adapters is not None and conditions is not None
        embedded = self.adapters.embed(conditions) if use_adapters else None
        for index, layer in enumerate(self.layers):
            if use_adapters:
                h = self.adapters(index, h, embedded, conditions.mask)
            h = layer(h, c, batch.mask)
        return h, c

    def forward(
        self, batch: ProtoBatch, t: torch.Tensor, conditions: Conditions | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, N, V + 1)`` for fixed positions and ``(B, N, V, K + 1)`` for free ones.

        :param t: (B,) diffusion time of each crystal, 0..T.
        :param conditions: adapter inputs; ``None`` (or no adapters) gives the unconditional base model.
        """
        h, c = self.hidden_states(batch, t, conditions)
        out = torch.cat([h, c], dim=-1)
        size, nodes = batch.mask.shape
        logits_count = self.count_head(out).reshape(size, nodes, self.num_elements, self.num_counts)
        return self.fixed_head(out), logits_count
