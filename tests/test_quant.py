"""Ternary core: tensor ternarization, STE layers, model surgery and stats."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgeclip.errors import QuantError
from edgeclip.quant import (
    TernaryConfig,
    TernaryConv2d,
    TernaryEmbedding,
    TernaryLinear,
    freeze,
    layer_role,
    model_stats,
    parse_granularity,
    quantize,
    ternarize_tensor,
)


def test_channel_scale_is_beta_times_mean_abs():
    w = torch.tensor([[1.0, -2.0, 0.1, 0.0], [0.5, 0.5, -0.5, 0.5]])
    t = ternarize_tensor(w, "channel", beta=1.0)
    assert torch.allclose(t.scales, torch.tensor([0.775, 0.5]))
    # 1/0.775 rounds to 1, -2/0.775 clamps to -1, 0.1/0.775 rounds to 0.
    assert t.values.tolist() == [[1, -1, 0, 0], [1, 1, -1, 1]]
    assert t.values.dtype == torch.int8


def test_tensor_and_group_granularity():
    w = torch.randn(6, 5)
    per_tensor = ternarize_tensor(w, "tensor", beta=1.5)
    assert per_tensor.scales.shape == (1,)
    assert torch.allclose(per_tensor.scales, 1.5 * w.abs().mean().reshape(1))
    grouped = ternarize_tensor(w, ("group", 2), beta=1.5)
    assert grouped.scales.shape == (3,)
    assert torch.allclose(grouped.scales[1], 1.5 * w[2:4].abs().mean())
    assert grouped.dequantize().shape == w.shape


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 17),
    beta=st.floats(0.3, 3.0),
    granularity=st.sampled_from(["tensor", "channel"]),
)
def test_values_are_trits_and_rounding_is_nearest(rows, cols, beta, granularity):
    w = torch.randn(rows, cols)
    t = ternarize_tensor(w, granularity, beta)
    assert set(t.values.unique().tolist()) <= {-1, 0, 1}
    per_row = t.scales.repeat_interleave(t.rows_per_scale).reshape(-1, 1)
    expected = torch.clamp(torch.round(w / per_row), -1, 1)
    assert torch.equal(t.values.float(), expected)


def test_bad_granularity_and_beta_are_refused():
    w = torch.randn(6, 4)
    with pytest.raises(QuantError, match="does not divide"):
        ternarize_tensor(w, ("group", 4))
    with pytest.raises(QuantError, match="unknown granularity"):
        ternarize_tensor(w, "row")
    with pytest.raises(QuantError, match="beta"):
        ternarize_tensor(w, beta=0)
    assert parse_granularity("group:64") == ("group", 64)
    with pytest.raises(QuantError):
        parse_granularity("group:x")


def test_ste_passes_gradient_inside_clip_range_only():
    linear = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.1, -0.2, 0.3, 10.0]]))
    layer = TernaryLinear(linear, granularity="channel", beta=1.0, clip=2.0)
    layer(torch.ones(1, 4)).sum().backward()
    # gamma = mean|W| = 2.65; the outlier 10.0 lies beyond 2 * gamma and gets no gradient.
    assert layer.weight.grad.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_frozen_layers_hold_only_int8_and_match_latent_outputs():
    torch.manual_seed(0)
    linear = TernaryLinear(nn.Linear(16, 8))
    conv = TernaryConv2d(nn.Conv2d(3, 8, kernel_size=4, stride=4))
    embed = TernaryEmbedding(nn.Embedding(50, 8))
    x, img, ids = torch.randn(3, 16), torch.randn(2, 3, 8, 8), torch.randint(0, 50, (2, 5))
    before = (linear(x), conv(img), embed(ids))
    for layer in (linear, conv, embed):
        layer.freeze()
        assert layer.frozen
        assert [name for name, _ in layer.named_parameters()] in (["bias"], [])
        assert layer.trits.dtype == torch.int8
    after = (linear(x), conv(img), embed(ids))
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("granularity", ["channel", ("group", 2)])
def test_learned_scales_start_at_the_fixed_ones_get_exact_gradients_and_are_what_freeze_keeps(granularity):
    torch.manual_seed(0)
    source = nn.Linear(16, 6)
    fixed, learned = TernaryLinear(source, granularity), TernaryLinear(source, granularity, learn_scales=True)
    x = torch.randn(5, 16)
    assert torch.equal(fixed(x), learned(x))  # step 0 is unchanged
    learned(x).pow(2).sum().backward()
    trits = learned.ternary().values.float()
    scales = learned.ternary().scales.clone().requires_grad_()
    per_row = scales.repeat_interleave(learned.group)[:, None]
    nn.functional.linear(x, trits * per_row, source.bias.detach()).pow(2).sum().backward()
    assert torch.allclose(learned.learned_scales.grad, scales.grad, rtol=1e-5)
    assert torch.equal(learned.weight.grad, fixed_grad(source, granularity, x))  # the latent STE is the same
    with torch.no_grad():
        learned.learned_scales.mul_(1.25)
    before = learned(x).detach()
    assert not torch.allclose(before, fixed(x))
    learned.freeze()
    assert torch.equal(learned(x), before) and torch.equal(learned.scales, scales.detach() * 1.25)
    assert [name for name, _ in learned.named_parameters()] == ["bias"]


def fixed_grad(source, granularity, x):
    layer = TernaryLinear(source, granularity)
    gamma = layer.ternary().scales.repeat_interleave(layer.group)[:, None]
    # d/dW of sum(y^2) with the identity STE: grad_y^T x, masked to the clip range
    y = layer(x).detach()
    return ((2 * y).T @ x) * (layer.weight.detach().abs() <= layer.clip * gamma)


def test_learned_scales_of_an_embedding_train_only_the_rows_a_batch_uses():
    torch.manual_seed(0)
    layer = TernaryEmbedding(nn.Embedding(30, 8, padding_idx=0), learn_scales=True)
    out = layer(torch.tensor([[0, 4, 4, 9]]))
    out.backward(torch.randn_like(out))
    assert layer.learned_scales.grad.nonzero().flatten().tolist() == [4, 9]


def test_config_round_trips_learn_scales():
    config = TernaryConfig(learn_scales=True)
    assert TernaryConfig.from_dict(config.to_dict()) == config
    assert TernaryConfig.from_dict({}).learn_scales is False
    model = nn.Sequential(nn.Linear(4, 4))
    quantize(model, config)
    assert model[0].learned_scales is not None


@pytest.mark.parametrize("granularity", ["channel", "tensor", ("group", 5)])
def test_embedding_ternarizes_only_used_rows_with_whole_table_results(granularity):
    """Per-row scales let training ternarize just the batch's rows; outputs and gradients (padding
    row excluded) must equal ternarizing the whole vocabulary."""
    torch.manual_seed(0)
    layer = TernaryEmbedding(nn.Embedding(50, 8, padding_idx=3), granularity=granularity)
    ids = torch.randint(0, 50, (4, 9))
    ids[0, :4] = 3
    out = layer(ids)
    weight = layer.weight.detach().clone().requires_grad_()
    reference = nn.functional.embedding(ids, ternarize_tensor(weight, granularity).dequantize(), 3)
    assert torch.equal(out, reference)
    grad = torch.randn_like(out)
    out.backward(grad)
    gamma = ternarize_tensor(weight, granularity).scales.repeat_interleave(layer.group)[:, None]
    expected = torch.zeros_like(weight).index_add_(0, ids.flatten(), grad.reshape(-1, 8))
    expected[3] = 0
    assert torch.allclose(layer.weight.grad, expected * (weight.abs() <= layer.clip * gamma))


def _bert_like():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            self.attention.self.query = nn.Linear(8, 8)
            self.attention.output = nn.Module()
            self.attention.output.dense = nn.Linear(8, 8)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(8, 16)
            self.output = nn.Module()
            self.output.dense = nn.Linear(16, 8)

    model = nn.Module()
    model.word_embeddings = nn.Embedding(20, 8)
    model.position_embeddings = nn.Embedding(10, 8)
    model.block = Block()
    model.norm = nn.LayerNorm(8)
    return model


def test_roles_follow_bert_and_clip_names():
    model = _bert_like()
    assert layer_role("block.attention.self.query", model.block.attention.self.query) == "attention"
    assert layer_role("block.attention.output.dense", model.block.attention.output.dense) == "attention"
    assert layer_role("block.intermediate.dense", model.block.intermediate.dense) == "ffn"
    assert layer_role("block.output.dense", model.block.output.dense) == "ffn"
    assert layer_role("word_embeddings", model.word_embeddings) == "token"
    assert layer_role("position_embeddings", model.position_embeddings) is None
    assert layer_role("text_projection", nn.Linear(2, 2)) == "linear"
    assert layer_role("vision_model.embeddings.patch_embedding", nn.Conv2d(3, 4, 2)) == "patch"


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("q-all", {"word_embeddings", "block.attention.self.query", "block.attention.output.dense",
                   "block.intermediate.dense", "block.output.dense"}),
        ("q-ffn", {"block.intermediate.dense", "block.output.dense"}),
        ("q-attn", {"block.attention.self.query", "block.attention.output.dense"}),
    ],
)
def test_policies_select_layers(policy, expected):
    model = _bert_like()
    report = quantize(model, TernaryConfig(policy=policy))
    assert set(report.quantized) == expected
    assert isinstance(model.norm, nn.LayerNorm)
    assert isinstance(model.position_embeddings, nn.Embedding)


def test_skip_list_and_filter_fn():
    model = _bert_like()
    report = quantize(
        model,
        TernaryConfig(skip=("block.attention",)),
        filter_fn=lambda module, name: name != "word_embeddings",
    )
    assert set(report.quantized) == {"block.intermediate.dense", "block.output.dense"}
    assert set(report.skipped) == {"word_embeddings", "block.attention.self.query", "block.attention.output.dense"}
    with pytest.raises(QuantError, match="already ternary"):
        quantize(model)
    with pytest.raises(QuantError, match="unknown policy"):
        quantize(_bert_like(), TernaryConfig(policy="q-everything"))


def test_group_granularity_falls_back_where_it_does_not_divide():
    model = _bert_like()
    quantize(model, TernaryConfig(granularity=("group", 8)))
    assert model.block.intermediate.dense.ternary().scales.shape == (2,)  # 16 rows / 8
    assert model.word_embeddings.ternary().scales.shape == (20,)  # 20 rows: per-channel fallback


def test_stats_count_ternary_share_sparsity_and_storage():
    model = _bert_like()
    float_params = sum(p.numel() for p in model.parameters())
    quantize(model)
    freeze(model)
    stats = model_stats(model)
    linear_weights = 8 * 8 + 8 * 8 + 8 * 16 + 16 * 8
    assert stats["parameters"] == float_params
    assert stats["ternary_weights"] == linear_weights + 20 * 8
    assert stats["ternary_fraction_linear"] == 1.0
    assert 0 < stats["sparsity"] < 1
    assert stats["ternary_fraction_all"] == pytest.approx(stats["ternary_weights"] / float_params)
    assert stats["compression_vs_fp32"] == pytest.approx(32 / stats["bits_per_weight"])
    # The latent (training) form counts the same weights once, not twice.
    latent = _bert_like()
    quantize(latent)
    assert model_stats(latent)["parameters"] == float_params
