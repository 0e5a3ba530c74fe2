"""HF CLIP directory loading, the tiny test model, and open_clip state-dict import/export."""

import json
import socket
import time

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import make_tiny_clip, make_tiny_clip_dir, tiny_clip_config
from safetensors.torch import load_file, save_file

from edgeclip.errors import ModelError
from edgeclip.models.hf_clip import load_hf_clip
from edgeclip.models.open_clip_state import load_open_clip_state_dict, to_open_clip_state_dict

END_ID = 49407


def _inputs(config, seed=0):
    """Pixels plus token ids whose end token sits at different positions, zero padded after it."""
    gen = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    pixels = torch.randn(3, 3, size, size, generator=gen)
    ids = torch.randint(1, END_ID - 1, (3, 77), generator=gen)
    for row, end in enumerate((5, 20, 76)):
        ids[row, end] = END_ID
        ids[row, end + 1 :] = 0
    return pixels, ids


def _embeds(model, pixels, ids):
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels)
    return out.image_embeds, out.text_embeds, out.logits_per_image


# ---- load_hf_clip -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_clip_dir(tmp_path_factory.mktemp("tiny_clip"), seed=0)


def test_load_hf_clip_gives_the_saved_model(tiny_dir):
    reference = make_tiny_clip(seed=0)
    loaded = load_hf_clip(tiny_dir)
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    pixels, ids = _inputs(loaded.config)
    for ours, theirs in zip(_embeds(loaded, pixels, ids), _embeds(reference, pixels, ids), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_tiny_clip_is_seeded_and_configurable(tmp_path):
    a, b, c = make_tiny_clip(seed=3), make_tiny_clip(seed=3), make_tiny_clip(seed=4)
    assert torch.equal(a.visual_projection.weight, b.visual_projection.weight)
    assert not torch.equal(a.visual_projection.weight, c.visual_projection.weight)
    config = tiny_clip_config(vision_hidden_act="gelu", text_num_hidden_layers=1, projection_dim=16)
    assert (config.vision_config.hidden_act, config.text_config.hidden_act) == ("gelu", "quick_gelu")
    assert config.text_config.num_hidden_layers == 1 and config.projection_dim == 16
    assert config.text_config.vocab_size == 49408 and config.vision_config.image_size == 32
    assert (make_tiny_clip_dir(tmp_path / "m") / "model.safetensors").is_file()


def test_hub_id_is_refused_without_touching_the_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("load_hf_clip tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"openai/clip-vit-base-patch32.*does not exist.*never downloads"):
        load_hf_clip("openai/clip-vit-base-patch32")
    assert time.perf_counter() - start < 1.0


def _copy_dir(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").write_text("[1, 2]"), "must hold a JSON object"),
        (lambda d: (d / "model.safetensors").unlink(), "has no weights"),
        (lambda d: (d / "model.safetensors").write_bytes(b"truncated"), "could not load CLIP model"),
    ],
    ids=["no-config", "bad-json", "json-not-object", "no-weights", "corrupt-weights"],
)
def test_broken_clip_directory_is_a_model_error(tiny_dir, tmp_path, damage, message):
    broken = _copy_dir(tiny_dir, tmp_path / "broken")
    damage(broken)
    with pytest.raises(ModelError, match=message) as err:
        load_hf_clip(broken)
    assert "broken" in str(err.value)


def test_clip_weights_lacking_tensors_are_refused(tiny_dir, tmp_path):
    broken = _copy_dir(tiny_dir, tmp_path / "partial")
    weights = load_file(broken / "model.safetensors")
    del weights["visual_projection.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match="visual_projection.weight"):
        load_hf_clip(broken)


def test_non_clip_directory_and_plain_file_are_refused(tiny_dir, tmp_path):
    other = _copy_dir(tiny_dir, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelError, match="model_type 'bert', expected 'clip'"):
        load_hf_clip(other)
    with pytest.raises(ModelError, match="is a file"):
        load_hf_clip(other / "config.json")


# ---- open_clip state dicts ----------------------------------------------------------------------


def _random_open_clip_state(config, seed=0):
    """Random weights laid out the way open_clip stores them, built without the mapping under test."""
    gen = torch.Generator().manual_seed(seed)
    v, t = config.vision_config, config.text_config

    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=gen) * scale

    def tower(prefix, width, mlp, layers):
        state = {}
        for i in range(layers):
            p = f"{prefix}transformer.resblocks.{i}."
            state |= {
                p + "attn.in_proj_weight": rand(3 * width, width),
                p + "attn.in_proj_bias": rand(3 * width),
                p + "attn.out_proj.weight": rand(width, width),
                p + "attn.out_proj.bias": rand(width),
                p + "mlp.c_fc.weight": rand(mlp, width),
                p + "mlp.c_fc.bias": rand(mlp),
                p + "mlp.c_proj.weight": rand(width, mlp),
                p + "mlp.c_proj.bias": rand(width),
            }
            state |= layer_norm(p + "ln_1", width) | layer_norm(p + "ln_2", width)
        return state

    def layer_norm(name, width):
        return {name + ".weight": 1 + rand(width, scale=0.1), name + ".bias": rand(width)}

    patches = (v.image_size // v.patch_size) ** 2
    return {
        "visual.conv1.weight": rand(v.hidden_size, 3, v.patch_size, v.patch_size),
        "visual.class_embedding": rand(v.hidden_size),
        "visual.positional_embedding": rand(patches + 1, v.hidden_size),
        **layer_norm("visual.ln_pre", v.hidden_size),
        **tower("visual.", v.hidden_size, v.intermediate_size, v.num_hidden_layers),
        **layer_norm("visual.ln_post", v.hidden_size),
        "visual.proj": rand(v.hidden_size, config.projection_dim, scale=0.2),
        "token_embedding.weight": rand(t.vocab_size, t.hidden_size),
        "positional_embedding": rand(t.max_position_embeddings, t.hidden_size),
        **tower("", t.hidden_size, t.intermediate_size, t.num_hidden_layers),
        **layer_norm("ln_final", t.hidden_size),
        "text_projection": rand(t.hidden_size, config.projection_dim, scale=0.2),
        "logit_scale": torch.tensor(2.5),
    }


def _act(name):
    return (lambda x: x * torch.sigmoid(1.702 * x)) if name == "quick_gelu" else F.gelu


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _resblocks(x, sd, prefix, tower_config, attn_mask=None):
    """open_clip's residual attention blocks: pre-LN, nn.MultiheadAttention with fused in_proj."""
    act = _act(tower_config.hidden_act)
    for i in range(tower_config.num_hidden_layers):
        p = f"{prefix}transformer.resblocks.{i}."
        h = _ln(x, sd, p + "ln_1").transpose(0, 1)
        attn, _ = F.multi_head_attention_forward(
            h, h, h, x.shape[-1], tower_config.num_attention_heads,
            sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"], None, None, False, 0.0,
            sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"],
            training=False, need_weights=False, attn_mask=attn_mask,
        )  # fmt: skip
        x = x + attn.transpose(0, 1)
        h = act(F.linear(_ln(x, sd, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return x


def _reference_open_clip(sd, config, pixels, ids):
    """open_clip's CLIP forward written out in plain torch: (image embeds, text embeds, logits)."""
    v = config.vision_config
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=v.patch_size).flatten(2).transpose(1, 2)
    x = (
        torch.cat([sd["visual.class_embedding"].expand(len(x), 1, -1), x], dim=1)
        + sd["visual.positional_embedding"]
    )
    x = _resblocks(_ln(x, sd, "visual.ln_pre"), sd, "visual.", v)
    image = _ln(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]

    n = ids.shape[1]
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    x = _ln(_resblocks(x, sd, "", config.text_config, attn_mask=causal), sd, "ln_final")
    text = x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ sd["text_projection"]

    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    return image, text, sd["logit_scale"].exp() * image @ text.t()


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_open_clip_weights_reproduce_the_open_clip_forward(act):
    config = tiny_clip_config(vision_hidden_act=act, text_hidden_act=act)
    state = _random_open_clip_state(config)
    model = load_open_clip_state_dict(state, config)
    assert not model.training
    pixels, ids = _inputs(config)
    with torch.no_grad():
        expected = _reference_open_clip(state, config, pixels, ids)
    for ours, theirs in zip(_embeds(model, pixels, ids), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)

    other = "gelu" if act == "quick_gelu" else "quick_gelu"
    wrong = load_open_clip_state_dict(state, tiny_clip_config(vision_hidden_act=other, text_hidden_act=other))
    assert not torch.allclose(_embeds(wrong, pixels, ids)[0], expected[0], atol=1e-4)


def test_open_clip_round_trip_is_exact():
    model = make_tiny_clip(seed=5)
    state = to_open_clip_state_dict(model)
    assert state["visual.proj"].shape == (64, 32) and state[
        "transformer.resblocks.0.attn.in_proj_weight"
    ].shape == (192, 64)
    back = to_open_clip_state_dict(load_open_clip_state_dict(state, model.config))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    pixels, ids = _inputs(model.config)
    for ours, theirs in zip(
        _embeds(load_open_clip_state_dict(state, model.config), pixels, ids),
        _embeds(model, pixels, ids),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_open_clip_checkpoint_files(tmp_path):
    config = tiny_clip_config()
    state = _random_open_clip_state(config, seed=1)
    save_file(state, tmp_path / "w.safetensors")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v.half() for k, v in state.items()}}
    wrapped["state_dict"]["module.attn_mask"] = torch.zeros(77, 77)
    torch.save(wrapped, tmp_path / "w.pt")
    from_safetensors = load_open_clip_state_dict(tmp_path / "w.safetensors", config)
    from_torch = load_open_clip_state_dict(str(tmp_path / "w.pt"), config)
    assert from_torch.visual_projection.weight.dtype == torch.float32
    torch.testing.assert_close(
        from_safetensors.visual_projection.weight, state["visual.proj"].t(), rtol=0, atol=0
    )
    torch.testing.assert_close(
        from_torch.visual_projection.weight, state["visual.proj"].t(), rtol=1e-3, atol=1e-4
    )


def test_open_clip_mismatches_are_listed():
    config = tiny_clip_config()
    state = _random_open_clip_state(config)
    broken = {k: v for k, v in state.items() if k != "ln_final.bias"}
    broken["visual.attnpool.q_proj.weight"] = torch.zeros(1)
    broken["visual.proj"] = torch.zeros(64, 16)
    with pytest.raises(ModelError) as err:
        load_open_clip_state_dict(broken, config)
    message = str(err.value)
    assert "missing: ln_final.bias" in message
    assert "unknown: visual.attnpool.q_proj.weight" in message
    assert "visual.proj is (64, 16), expected (64, 32)" in message

    with pytest.raises(ModelError, match=r"unknown: .*resblocks\.1\.") as err:
        load_open_clip_state_dict(
            state, tiny_clip_config(vision_num_hidden_layers=1, text_num_hidden_layers=1)
        )
    assert "(+" in str(err.value)  # long lists are cut short with a count


def test_open_clip_bad_sources(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_open_clip_state_dict(tmp_path / "nope.pt", tiny_clip_config())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not read open_clip checkpoint .*junk.pt"):
        load_open_clip_state_dict(tmp_path / "junk.pt", tiny_clip_config())


def test_an_open_clip_folder_is_a_teacher_spec(tmp_path):
    """The folder open_clip publishes (open_clip_config.json + weights) loads through --model/--teacher."""
    from edgeclip.models.sources import load_source

    original = make_tiny_clip(seed=3, vision_hidden_act="gelu", text_hidden_act="gelu")
    vision, text = original.config.vision_config, original.config.text_config
    model_cfg = {"embed_dim": original.config.projection_dim,
                 "vision_cfg": {"image_size": vision.image_size, "patch_size": vision.patch_size,
                                "width": vision.hidden_size, "layers": vision.num_hidden_layers,
                                "head_width": vision.hidden_size // vision.num_attention_heads,
                                "mlp_ratio": vision.intermediate_size / vision.hidden_size},
                 "text_cfg": {"context_length": text.max_position_embeddings, "vocab_size": text.vocab_size,
                              "width": text.hidden_size, "heads": text.num_attention_heads,
                              "layers": text.num_hidden_layers, "mlp_ratio": text.intermediate_size / text.hidden_size}}
    folder = tmp_path / "open-clip-tiny"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    save_file(to_open_clip_state_dict(original), folder / "open_clip_model.safetensors")

    model, family, arch = load_source(str(folder))
    assert family.name == "hf-clip" and arch["projection_dim"] == model_cfg["embed_dim"]
    pixels, ids = torch.rand(1, 3, vision.image_size, vision.image_size), torch.tensor([[49406, 320, 49407]])
    with torch.no_grad():
        want, got = original(input_ids=ids, pixel_values=pixels), model(input_ids=ids, pixel_values=pixels)
    assert torch.allclose(want.image_embeds, got.image_embeds) and torch.allclose(want.text_embeds, got.text_embeds)

    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelError, match="no open_clip weights"):
        load_source(str(folder))
