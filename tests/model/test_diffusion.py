"""D3PM math: the closed forms and the one-matmul posterior against explicit matrix products."""

from __future__ import annotations

import pytest
import torch

from aiida_wyckoffdiff.model.config import Transition
from aiida_wyckoffdiff.model.diffusion import D3PM, sample_categorical, stationary_distribution

NUM_CLASSES, NUM_TIMESTEPS = 5, 12


@pytest.fixture(params=list(Transition))
def d3pm(request) -> D3PM:
    counts = torch.tensor([50.0, 3.0, 0.0, 7.0, 1.0])
    return D3PM(NUM_CLASSES, NUM_TIMESTEPS, stationary_distribution(request.param, counts))


def _one_step(d3pm: D3PM, t: int) -> torch.Tensor:
    """``Q_t`` from the ratio of consecutive ``abar``: the textbook one-step matrix."""
    return d3pm.transition_matrix(d3pm.alpha_bar[t] / d3pm.alpha_bar[t - 1])


def test_cumulative_transition_is_the_product_of_steps(d3pm) -> None:
    product = torch.eye(NUM_CLASSES)
    for t in range(1, NUM_TIMESTEPS + 1):
        product = product @ _one_step(d3pm, t)
        torch.testing.assert_close(product, d3pm.transition_matrix(d3pm.alpha_bar[t]), rtol=1e-5, atol=1e-6)


def test_forward_process_ends_in_the_stationary_distribution(d3pm) -> None:
    probs = d3pm.q_probs(torch.arange(NUM_CLASSES), torch.full((NUM_CLASSES,), NUM_TIMESTEPS))
    torch.testing.assert_close(probs, d3pm.stationary.expand(NUM_CLASSES, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(NUM_CLASSES))


@pytest.mark.parametrize(('t', 's'), [(12, 11), (12, 4), (7, 0), (1, 0)])
def test_posterior_is_bayes_rule_on_explicit_matrices(d3pm, t, s) -> None:
    """For a known x0, p(x_s | x_t) = Qbar_s[x0, x_s] Q_{s->t}[x_s, x_t] / Qbar_t[x0, x_t], also for strided jumps."""
    qbar_s = d3pm.transition_matrix(d3pm.alpha_bar[s])
    jump = torch.eye(NUM_CLASSES)
    for step in range(s + 1, t + 1):
        jump = jump @ _one_step(d3pm, step)
    for x0 in range(NUM_CLASSES):
        for x_t in range(NUM_CLASSES):
            joint = qbar_s[x0] * jump[:, x_t]
            if joint.sum() < 1e-12:
                continue  # x_t unreachable from x0 (absorbing)
            p0 = torch.nn.functional.one_hot(torch.tensor(x0), NUM_CLASSES).float()
            result = d3pm.posterior(p0, torch.tensor(x_t), t, s)
            torch.testing.assert_close(result, joint / joint.sum(), rtol=1e-4, atol=1e-6)


def test_posterior_averages_the_exact_posteriors_over_predicted_x0(d3pm) -> None:
    """p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0 | x_t), computed by the one matrix product."""
    torch.manual_seed(1)
    p0 = torch.softmax(torch.randn(NUM_CLASSES), -1)
    x_t, t, s = torch.tensor(0), 6, 2
    expected = torch.zeros(NUM_CLASSES)
    for x0 in range(NUM_CLASSES):
        onehot = torch.nn.functional.one_hot(torch.tensor(x0), NUM_CLASSES).float()
        expected += p0[x0] * d3pm.posterior(onehot, x_t, t, s)
    torch.testing.assert_close(d3pm.posterior(p0, x_t, t, s), expected, rtol=1e-4, atol=1e-6)


def test_categorical_sampling_follows_probabilities_and_never_picks_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.7, 0.0, 0.3]).expand(20000, -1)
    draws = sample_categorical(probs, generator)
    assert not (draws == 1).any()
    assert abs(float((draws == 0).float().mean()) - 0.7) < 0.02
