"""Energy guidance learned from the workflow's own relaxations: a ridge regression of relaxed e_above_hull on the
denoiser's pooled node states, fitted when a checkpoint is fine-tuned on relaxation rows
(``training.finetune_on_new_rows``).

Why beside the adapter: the Materials Project rows the adapter learned from all lie within 0.08 eV/atom of the hull,
and one round of fine-tuning on ~90 relaxed rows barely moves which known arrangements it prefers (docs/rounds.md). A
regression on the same network's features, fitted to those rows, ranks the next round's new protostructures by their
relaxed energy better than chance (``benchmarks/energy_head.py``). Where asked (``SamplingConfig.energy_guidance``, off
by default), sampling adds its Gaussian log-likelihood of the requested e_above_hull to each library candidate's
score: classifier guidance, with the classifier learned in the provenance graph. Measured, it has not steered
further than the adapter alone: its predictions within one space group's candidates differ by a few hundredths of an
eV/atom. Across groups and compositions they differ more, so the head steers as a screen instead
(``SamplingConfig.energy_screen``: draw N times the samples, keep those predicted closest to the target), which moved
the relaxed energies of targets 0 and 0.3 eV/atom 0.13-0.19 eV/atom apart on four systems (docs/rounds.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..exceptions import ProtostructureError
from ..symmetry import Protostructure
from .adapters import Condition, Conditions
from .encoding import collate, encode

if TYPE_CHECKING:
    from .diffusion import WyckoffDiffusion

__all__ = ['ENERGY_CLIP', 'MIN_ROWS', 'EnergyHead', 'fit_energy_head', 'pooled_features']

ENERGY_CLIP = 1.0
"""eV/atom: relaxed energies above this count as this much; a structure 3 eV/atom above the hull is as useless as one
1 eV/atom above it, and the clip keeps a few such rows from dominating a least-squares fit."""

MIN_ROWS = 8
"""Fewer relaxation rows than this fit no head: the leave-one-out error of so few says nothing."""

_ALPHAS = 10.0 ** np.arange(-2.0, 5.01, 0.5)


@torch.no_grad()
def pooled_features(
    model: WyckoffDiffusion, protostructures: Sequence[Protostructure], chemsys: Sequence[Sequence[str]],
    batch_size: int = 256,
) -> np.ndarray:
    """``(P, 2H + V)`` mean- and max-pooled node states of the clean protostructures (time 0), conditioned on their
    chemical system and space group with the energy condition left out, so the features do not depend on a target;
    then the atomic fraction of each vocabulary element, since the composition decides much of a relaxed structure's
    distance to the hull (a nearest-neighbour average over compositions alone ranks the next round's new
    protostructures with Spearman 0.37-0.50 in three of four rounds, ``benchmarks/energy_head.py``)."""
    device = model.spacegroup_counts.device
    elements = model.config.elements
    offset = model.denoiser.position_offset.cpu().numpy()
    features = []
    for start in range(0, len(protostructures), batch_size):
        chunk = protostructures[start : start + batch_size]
        systems = chemsys[start : start + batch_size]
        batch = collate([encode(p, elements, model.config.max_count) for p in chunk], len(elements), offset).to(device)
        size = len(chunk)
        mask = torch.ones(size, len(Condition), device=device)
        mask[:, Condition.E_ABOVE_HULL] = 0.0
        conditions = Conditions(
            chemsys=torch.tensor([[e in system for e in elements] for system in systems], dtype=torch.float32,
                                 device=device),
            spacegroup=batch.spacegroup, e_above_hull=torch.zeros(size, device=device), mask=mask,
        )
        h, _ = model.denoiser.hidden_states(batch, torch.zeros(size, dtype=torch.long, device=device),
                                            conditions if model.has_adapters else None)
        nodes = batch.mask[..., None].float()
        mean = (h * nodes).sum(1) / nodes.sum(1)
        largest = h.masked_fill(nodes == 0, float('-inf')).amax(1)
        fractions = torch.tensor(
            [[p.composition.get_atomic_fraction(element) for element in elements] for p in chunk], device=device
        )
        features.append(torch.cat([mean, largest, fractions], dim=-1).cpu())
    return torch.cat(features).double().numpy() if features else np.zeros((0, 0))


@dataclass
class EnergyHead:
    """A ridge regression from :func:`pooled_features` to relaxed e_above_hull (eV/atom, clipped at
    :data:`ENERGY_CLIP`), with its leave-one-out error as the spread of its Gaussian likelihood."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    offset: float
    alpha: float
    """The ridge penalty, chosen by leave-one-out error among powers of ten from 0.01 to 1e5."""
    loo_rmse: float
    """eV/atom: the leave-one-out root-mean-square error, the likelihood's standard deviation."""
    rows: int

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted relaxed e_above_hull (eV/atom) of each row of ``features``."""
        return ((features - self.mean) / self.scale) @ self.weights + self.offset

    def distance(self, features: np.ndarray, target: float) -> np.ndarray:
        """How far (eV/atom) each prediction lies from ``target``, clipped as the head's energies are."""
        return np.abs(self.predict(features) - min(target, ENERGY_CLIP))

    def log_likelihood(self, features: np.ndarray, target: float) -> np.ndarray:
        """Gaussian log-likelihood (up to a constant) that each protostructure relaxes to ``target`` eV/atom."""
        return -0.5 * (self.distance(features, target) / self.loo_rmse) ** 2

    def state(self) -> dict[str, Any]:
        """Tensors and numbers for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {
            'mean': torch.from_numpy(self.mean), 'scale': torch.from_numpy(self.scale),
            'weights': torch.from_numpy(self.weights), 'offset': self.offset, 'alpha': self.alpha,
            'loo_rmse': self.loo_rmse, 'rows': self.rows,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EnergyHead:
        arrays = {key: state[key].double().numpy() for key in ('mean', 'scale', 'weights')}
        return cls(**arrays, offset=float(state['offset']), alpha=float(state['alpha']),
                   loo_rmse=float(state['loo_rmse']), rows=int(state['rows']))


def _ridge(features: np.ndarray, energies: np.ndarray) -> EnergyHead:
    """The ridge fit with the smallest leave-one-out error, computed in closed form from one SVD."""
    mean, scale = features.mean(0), features.std(0) + 1e-6
    standardized = (features - mean) / scale
    offset = float(energies.mean())
    centred = energies - offset
    u, s, vt = np.linalg.svd(standardized, full_matrices=False)
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in _ALPHAS:
        shrink = s**2 / (s**2 + alpha)
        weights = vt.T @ ((s / (s**2 + alpha)) * (u.T @ centred))
        leverage = (u**2 * shrink).sum(1) + 1.0 / len(energies)  # the intercept's leverage too
        residuals = (centred - standardized @ weights) / (1.0 - leverage)
        error = float(np.sqrt(np.mean(residuals**2)))
        if best is None or error < best[0]:
            best = (error, float(alpha), weights)
    error, alpha, weights = best  # type: ignore[misc]
    return EnergyHead(mean, scale, weights, offset, alpha, max(error, 1e-3), len(energies))


def fit_energy_head(model: WyckoffDiffusion, rows: Sequence[dict[str, Any]]) -> EnergyHead | None:
    """Fit the head to relaxation rows (``label``, ``chemsys``, ``e_above_hull``); rows the model cannot encode (more
    orbits than it counts) are left out. ``None`` with fewer than :data:`MIN_ROWS` usable rows."""
    protostructures, systems, energies = [], [], []
    for row in rows:
        try:
            protostructure = Protostructure.from_label(row['label'])
            encode(protostructure, model.config.elements, model.config.max_count)
        except ProtostructureError:
            continue
        protostructures.append(protostructure)
        systems.append(tuple(row['chemsys'].split('-')))
        energies.append(min(float(row['e_above_hull']), ENERGY_CLIP))
    if len(energies) < MIN_ROWS:
        return None
    return _ridge(pooled_features(model, protostructures, systems), np.array(energies))
