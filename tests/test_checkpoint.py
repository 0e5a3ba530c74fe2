"""Checkpoint directories: round trip, determinism, atomic replace, and every kind of damage."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeclip.errors import CheckpointError
from edgeclip.models import checkpoint as checkpoint_module
from edgeclip.models.checkpoint import read_checkpoint, write_checkpoint
from edgeclip.quant.packing import pack_base3, unpack_base3

MODEL_CONFIG = {
    "family": "tiny",
    "arch": {"width": 8, "layers": 2},
    "quant": {"beta": 1.5, "policy": "q-all"},
}


def sample_tensors():
    rng = np.random.default_rng(0)
    trits = rng.integers(-1, 2, size=(8, 13)).astype(np.int8)
    return {
        "fc.weight.trits": pack_base3(trits),
        "fc.weight.scale": rng.random(8, dtype=np.float32),
        "fc.bias": torch.randn(8, generator=torch.Generator().manual_seed(0)),
        "embed.weight": torch.randn(5, 8, generator=torch.Generator().manual_seed(1)).half(),
        "position_ids": torch.arange(7).reshape(1, 7),
        "mask": np.array([1, 0, 1], np.int8),
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.fixture
def checkpoint(tmp_path):
    return write_checkpoint(tmp_path / "ckpt", sample_tensors(), MODEL_CONFIG)


def as_torch(value):
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def edit_config(directory, change):
    path = directory / "config.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def rerecord_weights(directory):
    """Make config.json vouch for whatever weights file is there now (as a careless tool might)."""
    data = (directory / "model.safetensors").read_bytes()

    def change(document):
        document["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    edit_config(directory, change)


def read_error(directory) -> str:
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(directory)
    message = str(caught.value)
    assert "\n" not in message
    assert str(directory) in message
    return message


def test_round_trip_keeps_values_dtypes_shapes_and_config(checkpoint):
    tensors, config = read_checkpoint(checkpoint)
    assert config == MODEL_CONFIG
    expected = sample_tensors()
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        value = as_torch(value)
        assert tensors[name].dtype == value.dtype, name
        assert tensors[name].shape == value.shape, name
        assert torch.equal(tensors[name], value), name
    restored = unpack_base3(tensors["fc.weight.trits"].numpy(), (8, 13))
    assert restored.shape == (8, 13) and set(np.unique(restored)) <= {-1, 0, 1}


def test_config_records_format_hash_and_tensor_table(checkpoint):
    document = json.loads((checkpoint / "config.json").read_text())
    weights = (checkpoint / "model.safetensors").read_bytes()
    assert document["format"] == "edgeclip-checkpoint" and document["format_version"] == 2
    assert document["weights"]["file"] == "model.safetensors"
    assert document["weights"]["bytes"] == len(weights)
    assert document["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert document["tensors"]["fc.weight.trits"] == {"dtype": "uint8", "shape": [21]}
    assert document["tensors"]["embed.weight"] == {"dtype": "float16", "shape": [5, 8]}
    assert document["tensors"]["empty"] == {"dtype": "float32", "shape": [0, 4]}
    assert document["model"] == MODEL_CONFIG


def test_same_inputs_give_identical_bytes_whatever_the_order(tmp_path, checkpoint):
    reordered = dict(reversed(list(sample_tensors().items())))
    config = dict(reversed(list(MODEL_CONFIG.items())))
    again = write_checkpoint(tmp_path / "again", reordered, config)
    for name in ("config.json", "model.safetensors"):
        assert (again / name).read_bytes() == (checkpoint / name).read_bytes()


def test_identical_bytes_across_processes(tmp_path, checkpoint):
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from test_checkpoint import sample_tensors, MODEL_CONFIG;"
        "from edgeclip.models.checkpoint import write_checkpoint;"
        "write_checkpoint(sys.argv[1], sample_tensors(), MODEL_CONFIG)"
    )
    other = tmp_path / "other"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script, str(other), os.path.dirname(__file__)], check=True, env=env)
    for name in ("config.json", "model.safetensors"):
        assert (other / name).read_bytes() == (checkpoint / name).read_bytes()


def test_tensors_sharing_memory_are_saved_separately(tmp_path):
    base = torch.arange(12, dtype=torch.float32)
    written = write_checkpoint(tmp_path / "c", {"all": base, "view": base[:6], "alias": base}, {})
    tensors, _ = read_checkpoint(written)
    assert torch.equal(tensors["view"], base[:6]) and torch.equal(tensors["alias"], base)


def test_rewrite_replaces_the_whole_checkpoint_and_leaves_no_temporaries(tmp_path, checkpoint):
    write_checkpoint(checkpoint, {"only": np.ones(3, np.float32)}, {"family": "new"}, replace=True)
    tensors, config = read_checkpoint(checkpoint)
    assert list(tensors) == ["only"] and config == {"family": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.json", "model.safetensors"]


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, checkpoint):
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    with pytest.raises(CheckpointError, match="not plain JSON"):
        write_checkpoint(checkpoint, {"x": np.ones(2, np.float32)}, {"loss": float("nan")}, replace=True)
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_refuses_to_replace_a_directory_with_other_files(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to replace.*notes.txt"):
        write_checkpoint(precious, {"x": np.ones(1, np.float32)}, {})
    assert (precious / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="not a directory"):
        write_checkpoint(tmp_path / "file", {"x": np.ones(1, np.float32)}, {})


def test_rejects_unsavable_inputs(tmp_path):
    with pytest.raises(CheckpointError, match="not a numpy array or torch tensor"):
        write_checkpoint(tmp_path / "c", {"x": [1, 2]}, {})
    with pytest.raises(CheckpointError, match="names must be non-empty strings"):
        write_checkpoint(tmp_path / "c", {3: np.ones(1)}, {})
    with pytest.raises(CheckpointError, match="config must be a dict"):
        write_checkpoint(tmp_path / "c", {"x": np.ones(1)}, ["not", "a", "dict"])
    assert not (tmp_path / "c").exists()


def test_missing_directory(tmp_path):
    assert "does not exist" in read_error(tmp_path / "nowhere")


def test_missing_config(checkpoint):
    (checkpoint / "config.json").unlink()
    assert "config.json: missing" in read_error(checkpoint)


def test_config_not_json(checkpoint):
    (checkpoint / "config.json").write_text('{"format": "edgeclip-checkpoint",')
    assert "not valid JSON" in read_error(checkpoint)


def test_config_wrong_format(checkpoint):
    edit_config(checkpoint, lambda d: d.update(format="something-else"))
    assert "wrong format 'something-else'" in read_error(checkpoint)


def test_config_unsupported_version(checkpoint):
    edit_config(checkpoint, lambda d: d.update(format_version=3))
    assert "unsupported format_version 3" in read_error(checkpoint)


def test_config_weights_file_must_stay_inside_the_directory(checkpoint):
    edit_config(checkpoint, lambda d: d["weights"].update(file="../elsewhere.safetensors"))
    assert "not a plain file name" in read_error(checkpoint)


def test_config_without_model_section(checkpoint):
    edit_config(checkpoint, lambda d: d.pop("model"))
    assert "'model' is missing" in read_error(checkpoint)


def test_weights_missing(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    assert "weights file missing" in read_error(checkpoint)


def test_weights_truncated(checkpoint):
    path = checkpoint / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    message = read_error(checkpoint)
    assert "truncated" in message and f"records {len(data)}" in message


def test_weights_with_extra_bytes(checkpoint):
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes() + b"\0")
    assert "size mismatch" in read_error(checkpoint)


def test_weights_bit_flipped(checkpoint):
    path = checkpoint / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    assert "corrupted: sha256 mismatch" in read_error(checkpoint)


def test_weights_from_another_checkpoint(tmp_path, checkpoint):
    other = write_checkpoint(tmp_path / "other", {"fc.bias": np.zeros(8, np.float32)}, MODEL_CONFIG)
    (checkpoint / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    assert "truncated" in read_error(checkpoint)
    rerecord_weights(checkpoint)
    message = read_error(checkpoint)
    assert "tensor names differ" in message
    assert "missing [" in message and "embed.weight" in message and "unexpected []" in message


def test_same_size_weights_from_another_checkpoint(tmp_path, checkpoint):
    tensors = sample_tensors()
    tensors["fc.bias"] = torch.ones(8)
    other = write_checkpoint(tmp_path / "other", tensors, MODEL_CONFIG)
    (checkpoint / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    assert "sha256 mismatch" in read_error(checkpoint)


def test_unparsable_safetensors_header(checkpoint):
    path = checkpoint / "model.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + b"{not json")
    rerecord_weights(checkpoint)
    assert "safetensors header unparsable" in read_error(checkpoint)
    path.write_bytes((9).to_bytes(8, "little") + b"{not json")
    rerecord_weights(checkpoint)
    assert "safetensors header unparsable" in read_error(checkpoint)


def test_unexpected_tensor_in_weights(tmp_path, checkpoint):
    edit_config(checkpoint, lambda d: d["tensors"].pop("mask"))
    message = read_error(checkpoint)
    assert "missing []" in message and "unexpected [mask]" in message


def test_dtype_differs_from_config(checkpoint):
    edit_config(checkpoint, lambda d: d["tensors"]["fc.weight.scale"].update(dtype="float16"))
    assert "'fc.weight.scale' has dtype float32 but config.json records float16" in read_error(checkpoint)


def test_shape_differs_from_config(checkpoint):
    edit_config(checkpoint, lambda d: d["tensors"]["embed.weight"].update(shape=[8, 5]))
    assert "'embed.weight' has shape [5, 8] but config.json records [8, 5]" in read_error(checkpoint)


@pytest.mark.parametrize("swap", [checkpoint_module._exchange, checkpoint_module._replace_by_renames])
def test_both_replace_strategies_swap_directories_whole(tmp_path, swap):
    old, new = tmp_path / "ckpt", tmp_path / ".ckpt.tmp-x"
    write_checkpoint(old, {"old": np.zeros(2, np.float32)}, {"v": "old"})
    write_checkpoint(new, {"new": np.ones(3, np.float32)}, {"v": "new"})
    assert swap(new, old) in (None, True)
    assert read_checkpoint(old)[1] == {"v": "new"}
    assert read_checkpoint(new)[1] == {"v": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.tmp-x", "ckpt"]


def test_a_checkpoint_is_not_replaced_without_asking(checkpoint):
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    with pytest.raises(CheckpointError, match="already holds a model.*--force"):
        write_checkpoint(checkpoint, {"only": np.ones(3, np.float32)}, {"family": "new"})
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before


@pytest.mark.parametrize("head, problem", [
    ({"pooling": "max"}, "sentence.pooling' is not one of mean, cls"),
    ("mean", "sentence.pooling' is not one of mean, cls"),
    ({"pooling": "cls", "lowercase": "yes"}, "sentence.lowercase' is not true or false"),
    ({"pooling": "mean", "vocab_sha256": "ABC"}, "sentence.vocab_sha256' is not 64 lowercase hex digits"),
])
def test_a_sentence_head_is_checked(checkpoint, head, problem):
    edit_config(checkpoint, lambda d: d["model"].setdefault("arch", {}).update(sentence=head))
    assert problem in read_error(checkpoint)


def test_a_sentence_head_needs_version_2_and_version_1_still_reads(checkpoint):
    edit_config(checkpoint, lambda d: d.update(format_version=1))
    read_checkpoint(checkpoint)  # a version 1 checkpoint, written before the head existed, still loads
    edit_config(checkpoint, lambda d: d["model"].setdefault("arch", {}).update(sentence={"pooling": "cls"}))
    assert "needs format_version 2" in read_error(checkpoint)
