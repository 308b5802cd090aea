"""D3PM discrete diffusion over the occupation variables, and the model that pairs it with the denoiser.

The forward process is ``Q_t = (1 - b_t) I + b_t 1 m^T`` with ``m`` uniform, the data marginal or all mass
on class 0 (absorbing). Because ``m`` does not change with ``t``, products of such matrices stay in the
family: ``Qbar_t = abar_t I + (1 - abar_t) 1 m^T`` with ``abar_t = prod (1 - b_s)``, and the jump from step
``s`` to a later step ``t`` is the same form with ``abar_t / abar_s``. So a reverse chain over any subset of
the T steps is exact in form, and the reverse step

    p(x_s | x_t) ~ Q_{s->t}[x_s, x_t] * sum_x0 p(x0 | x_t) / Qbar_t[x0, x_t] * Qbar_s[x0, x_s]

is one (D x D) matrix product per step instead of a D x D table per variable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .adapters import ConditionAdapters, Conditions
from .config import ModelConfig, Transition
from .encoding import ProtoBatch
from .gnn import WyckoffGNN

__all__ = [
    'D3PM',
    'WyckoffDiffusion',
    'build_model',
    'cosine_alpha_bar',
    'gumbel_scores',
    'sample_categorical',
    'stationary_distribution',
]


def cosine_alpha_bar(num_timesteps: int, offset: float = 0.008) -> torch.Tensor:
    """(T + 1,) float64 ``abar_t``: 1 at t = 0, falling to 0 at t = T (Nichol and Dhariwal's cosine schedule)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (f / f[0]).clamp(0.0, 1.0)


def stationary_distribution(transition: Transition, class_counts: torch.Tensor) -> torch.Tensor:
    """``m`` (D,) for a transition kind; the marginal is smoothed by one count per class so no class is unreachable."""
    num_classes = class_counts.shape[0]
    if transition is Transition.UNIFORM:
        return torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    if transition is Transition.ABSORBING:
        return torch.nn.functional.one_hot(torch.tensor(0), num_classes).double()
    smoothed = class_counts.double() + 1.0
    return smoothed / smoothed.sum()


def gumbel_scores(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., D) log-probabilities plus Gumbel noise: their argmax is a draw, ``-inf`` where the probability is 0."""
    uniform = torch.rand(probs.shape, generator=generator, device=probs.device).clamp_(1e-20, 1.0)
    return torch.log(probs.clamp_min(0)) - torch.log(-torch.log(uniform))


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one class per row of ``probs`` (..., D) by the Gumbel-max trick; zero-probability classes never win."""
    return gumbel_scores(probs, generator).argmax(dim=-1)


class D3PM(nn.Module):
    """Transition math for one kind of categorical variable; buffers only, no parameters."""

    def __init__(self, num_classes: int, num_timesteps: int, stationary: torch.Tensor | None = None) -> None:
        super().__init__()
        self.num_classes, self.num_timesteps = num_classes, num_timesteps
        if stationary is None:
            stationary = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        self.register_buffer('stationary', stationary.float())  # (D,) m
        self.register_buffer('alpha_bar', cosine_alpha_bar(num_timesteps).float())  # (T + 1,)

    def transition_matrix(self, alpha: float | torch.Tensor) -> torch.Tensor:
        """(D, D) ``alpha I + (1 - alpha) 1 m^T``: rows are the state before, columns the state after."""
        eye = torch.eye(self.num_classes, device=self.stationary.device)
        return alpha * eye + (1 - alpha) * self.stationary[None, :]

    def q_probs(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(..., D) ``q(x_t | x0)`` = row ``x0`` of ``Qbar_t``; ``t`` broadcasts against ``x0``."""
        alpha = self.alpha_bar[t][..., None]
        return alpha * nn.functional.one_hot(x0, self.num_classes) + (1 - alpha) * self.stationary

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_categorical(self.q_probs(x0, t), generator)

    def posterior(self, p0: torch.Tensor, x_t: torch.Tensor, t: int, s: int) -> torch.Tensor:
        """(..., D) ``p(x_s | x_t)`` for ``0 <= s < t`` from the predicted ``p(x0 | x_t)`` (..., D)."""
        alpha_t, alpha_s = self.alpha_bar[t], self.alpha_bar[s]
        onehot_t = nn.functional.one_hot(x_t, self.num_classes).float()
        stationary_t = self.stationary[x_t][..., None]  # (..., 1) m[x_t]
        likelihood = alpha_t * onehot_t + (1 - alpha_t) * stationary_t  # Qbar_t[x0, x_t] over x0
        weights = torch.where(likelihood > 0, p0 / likelihood.clamp_min(1e-30), torch.zeros_like(p0))
        marginal_s = weights @ self.transition_matrix(alpha_s)  # the one matmul: over x_s
        ratio = alpha_t / alpha_s.clamp_min(1e-30)
        step = ratio * onehot_t + (1 - ratio) * stationary_t  # Q_{s->t}[x_s, x_t] over x_s
        probs = marginal_s * step
        return probs / probs.sum(dim=-1, keepdim=True).clamp_min(1e-30)


class WyckoffDiffusion(nn.Module):
    """The denoiser and the two D3PMs (fixed-position classes, free-position counts), plus dataset statistics."""

    def __init__(self, config: ModelConfig, *, fill_tables: bool = True) -> None:
        super().__init__()
        self.config = config
        num_elements = len(config.elements)
        self.denoiser = WyckoffGNN(config, fill_tables=fill_tables)
        self.fixed_diffusion = D3PM(num_elements + 1, config.num_timesteps)
        self.count_diffusion = D3PM(config.max_count + 1, config.num_timesteps)
        # How often each space group occurs in training: the draw when a request names none.
        self.register_buffer('spacegroup_counts', torch.zeros(231))
        self.energy_head: Any = None
        """An :class:`.energy.EnergyHead`, fitted to relaxation rows when a checkpoint is fine-tuned on them; ``None``
        otherwise. Typed loosely: :mod:`.energy` reads this module's model, so importing it here would close a circle."""

    def set_statistics(
        self, fixed_counts: torch.Tensor, count_counts: torch.Tensor, spacegroup_counts: torch.Tensor
    ) -> None:
        """Install the class frequencies of the training data (for the marginal transition) and the group counts."""
        transition = self.config.transition
        self.fixed_diffusion.stationary.copy_(stationary_distribution(transition, fixed_counts))
        self.count_diffusion.stationary.copy_(stationary_distribution(transition, count_counts))
        self.spacegroup_counts.copy_(spacegroup_counts)

    def add_adapters(self, e_above_hull_mean: float, e_above_hull_std: float) -> None:
        config = self.config
        self.denoiser.adapters = ConditionAdapters(
            len(config.elements),
            config.hidden_dim,
            config.adapter_dim,
            config.num_layers,
            e_above_hull_mean,
            e_above_hull_std,
        ).to(self.spacegroup_counts.device)

    @property
    def has_adapters(self) -> bool:
        return self.denoiser.adapters is not None

    def noisy(self, batch: ProtoBatch, t: torch.Tensor, generator: torch.Generator | None = None) -> ProtoBatch:
        """``x_t ~ q(x_t | x0)``; variables that do not exist (counts of fixed positions, class of free ones) stay 0."""
        x_fixed = self.fixed_diffusion.q_sample(batch.x_fixed, t[:, None], generator)
        x_count = self.count_diffusion.q_sample(batch.x_count, t[:, None, None], generator)
        x_fixed = torch.where(batch.fixed, x_fixed, 0)
        x_count = torch.where(batch.free[..., None], x_count, 0)
        return batch.replace_variables(x_fixed, x_count)

    def loss(
        self, batch: ProtoBatch, conditions: Conditions | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Cross-entropy on x0 per Wyckoff position, averaged over positions.

        A free position's negative log-likelihood is the sum over its ``V`` count variables, so the many
        mostly-zero counts weigh as one position, like the single class of a fixed position.
        """
        size = batch.spacegroup.shape[0]
        t = torch.randint(1, self.config.num_timesteps + 1, (size,), generator=generator, device=batch.x_fixed.device)
        logits_fixed, logits_count = self.denoiser(self.noisy(batch, t, generator), t, conditions)
        return x0_nll(batch, logits_fixed, logits_count).sum() / batch.mask.sum()


def x0_nll(batch: ProtoBatch, logits_fixed: torch.Tensor, logits_count: torch.Tensor) -> torch.Tensor:
    """(B,) negative log-likelihood of each graph's clean variables under the predicted x0, summed over its positions
    (a free position's over its ``V`` count variables)."""
    nll_fixed = nn.functional.cross_entropy(logits_fixed.transpose(1, 2), batch.x_fixed, reduction='none')  # (B, N)
    nll_count = nn.functional.cross_entropy(logits_count.permute(0, 3, 1, 2), batch.x_count, reduction='none').sum(-1)
    return (nll_fixed * batch.fixed).sum(-1) + (nll_count * batch.free).sum(-1)


def build_model(config: ModelConfig, *, adapters: bool = False, fill_tables: bool = True) -> WyckoffDiffusion:
    """A fresh model for ``config``; ``fill_tables=False`` skips reading the Wyckoff tables when a state dict follows."""
    model = WyckoffDiffusion(config, fill_tables=fill_tables)
    if adapters:
        model.add_adapters(0.0, 1.0)
    return model
