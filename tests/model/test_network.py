"""The denoiser and its adapters: shapes, invariances and the exact efficient rewrites."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aiida_wyckoffdiff.exceptions import ProtostructureError
from aiida_wyckoffdiff.model.encoding import NUM_POSITIONS, decode, encode, position_table


def test_position_table_covers_all_groups() -> None:
    table = position_table()
    assert table.offset[-1] == NUM_POSITIONS == len(table.dof)
    assert table.offset[227] - table.offset[226] == 9  # Fd-3m, No. 227: letters a..i
    assert int((table.dof == 0).sum()) == 616  # fixed positions (RESEARCH.md section 1)


def test_encoding_round_trips(protostructures, tiny_config) -> None:
    for protostructure in protostructures:
        crystal = encode(protostructure, tiny_config.elements, tiny_config.max_count)
        assert not crystal.x_count[crystal.fixed].any() and not crystal.x_fixed[~crystal.fixed].any()
        assert decode(crystal.spacegroup, crystal.x_fixed, crystal.x_count, tiny_config.elements) == protostructure


def test_encoding_rejects_what_does_not_fit(protostructures, tiny_config) -> None:
    with pytest.raises(ProtostructureError, match='not among the columns'):
        encode(protostructures[0], ('Li', 'O'), tiny_config.max_count)
    with pytest.raises(ProtostructureError, match='has no atoms'):
        decode(225, np.zeros(12, dtype=np.int64), np.zeros((12, 5), dtype=np.int64), tiny_config.elements)


def test_output_shapes(tiny_model, tiny_batch, tiny_config) -> None:
    size, nodes = tiny_batch.mask.shape
    logits_fixed, logits_count = tiny_model.denoiser(tiny_batch, torch.full((size,), 7))
    assert logits_fixed.shape == (size, nodes, len(tiny_config.elements) + 1)
    assert logits_count.shape == (size, nodes, len(tiny_config.elements), tiny_config.max_count + 1)
    assert torch.isfinite(logits_fixed).all() and torch.isfinite(logits_count).all()


def test_positions_are_permutation_equivariant(tiny_model, tiny_batch) -> None:
    """Node order carries no meaning: permuting the positions of a crystal permutes its predictions."""
    size, nodes = tiny_batch.mask.shape
    t = torch.full((size,), 5)
    permutation = torch.randperm(nodes)
    permuted = type(tiny_batch)(
        tiny_batch.spacegroup,
        *(
            getattr(tiny_batch, name)[:, permutation]
            for name in ('position', 'mask', 'fixed', 'multiplicity', 'x_fixed', 'x_count')
        ),
    )
    reference = tiny_model.denoiser(tiny_batch, t)
    result = tiny_model.denoiser(permuted, t)
    mask = tiny_batch.mask[:, permutation]
    for ref, out in zip(reference, result, strict=True):
        torch.testing.assert_close(out[mask], ref[:, permutation][mask], rtol=1e-5, atol=1e-5)


def test_predictions_of_a_crystal_ignore_its_batch_mates(tiny_model, tiny_batch) -> None:
    size = tiny_batch.spacegroup.shape[0]
    t = torch.full((size,), 3)
    together = tiny_model.denoiser(tiny_batch, t)[1]
    alone = tiny_model.denoiser(
        tiny_batch.__class__(*(getattr(tiny_batch, f)[1:2] for f in tiny_batch.__dataclass_fields__)), t[1:2]
    )[1]
    nodes = int(tiny_batch.mask[1].sum())
    torch.testing.assert_close(alone[0, :nodes], together[1, :nodes], rtol=1e-5, atol=1e-5)


def test_split_attention_and_per_node_values_are_exact(tiny_model, tiny_batch) -> None:
    """The efficient layer equals the textbook per-edge form: MLP_a([u_i, u_j]) and MLP_v(u_j) on every edge."""
    layer = tiny_model.denoiser.layers[0]
    size, nodes = tiny_batch.mask.shape
    h = torch.randn(size, nodes, layer.norm.normalized_shape[0])
    c = torch.randn(size, nodes, layer.attention_query.in_features - h.shape[-1])
    u = torch.cat([layer.norm(h), c], dim=-1)
    first = torch.cat([layer.attention_query.weight, layer.attention_key.weight], dim=1)  # one (H, 2 (H + C)) layer
    pairs = torch.cat([u[:, :, None].expand(-1, -1, nodes, -1), u[:, None].expand(-1, nodes, -1, -1)], dim=-1)
    logits = layer.attention_score(torch.nn.functional.silu(pairs @ first.T + layer.attention_query.bias)).squeeze(-1)
    logits = logits.masked_fill(~tiny_batch.mask[:, None, :], float('-inf'))
    values = layer.value(u[:, None].expand(-1, nodes, -1, -1))  # (B, N, N, H): once per edge
    messages = (torch.softmax(logits, dim=-1)[..., None] * values).sum(dim=2)
    naive = h + layer.output(torch.nn.functional.silu(messages))
    torch.testing.assert_close(layer(h, c, tiny_batch.mask), naive, rtol=1e-5, atol=1e-5)


def test_fresh_adapters_leave_the_base_model_unchanged(tiny_model, tiny_batch, tiny_conditions) -> None:
    t = torch.full((tiny_batch.spacegroup.shape[0],), 9)
    base = tiny_model.denoiser(tiny_batch, t)
    tiny_model.add_adapters(0.1, 0.2)
    adapted = tiny_model.denoiser(tiny_batch, t, tiny_conditions)
    for before, after in zip(base, adapted, strict=True):
        assert torch.equal(before, after)


def test_trained_adapters_act_only_where_conditions_are_given(tiny_model, tiny_batch, tiny_conditions) -> None:
    t = torch.full((tiny_batch.spacegroup.shape[0],), 9)
    base = tiny_model.denoiser(tiny_batch, t)
    tiny_model.add_adapters(0.1, 0.2)
    for parameter in tiny_model.denoiser.adapters.parameters():
        torch.nn.init.normal_(parameter)
    conditioned = tiny_model.denoiser(tiny_batch, t, tiny_conditions)
    dropped = tiny_model.denoiser(tiny_batch, t, tiny_conditions.masked(torch.zeros_like(tiny_conditions.mask)))
    assert not torch.allclose(conditioned[0], base[0])
    for before, after in zip(base, dropped, strict=True):
        assert torch.equal(before, after)
