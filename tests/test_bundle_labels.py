"""Labels baked in at build time (`edgeclip build --labels`): the members, manifest entry and plan
line of a real image-tower-only host bundle, embeddings equal to the PyTorch text tower's, the
label list and prompt checks, and the manifest schema's refusals of a damaged `labels` entry.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile

import numpy as np
import pytest
from hostile import edit_field, older_schema

from edgeclip.bundle.labels import check_prompt, parse_labels, prompted
from edgeclip.errors import BundleError
from edgeclip.formats.bundle import MANIFEST, verify_bundle
from edgeclip.formats.manifest import SCHEMA_VERSION, check_manifest, variant_towers


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.fixture(scope="module")
def baked(baked_labels_bundle):
    members = _members(baked_labels_bundle.path)
    return baked_labels_bundle, members, json.loads(members[MANIFEST])


def test_labels_are_members_the_manifest_and_plan_name(baked):
    bundle, members, manifest = baked
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["labels"] == {"names": "labels/names.txt", "embeddings": "labels/embeddings.npy",
                                  "count": len(bundle.labels), "prompt": bundle.prompt}
    assert members["labels/names.txt"].decode("utf-8") == "".join(f"{label}\n" for label in bundle.labels)
    embeddings = np.load(io.BytesIO(members["labels/embeddings.npy"]))
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(bundle.labels), 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    plan = members["runner.plan"].decode().splitlines()
    assert "labels labels/names.txt labels/embeddings.npy" in plan
    # --towers image: the text tower embedded the labels at build time but is not in the bundle.
    assert set(variant_towers(manifest)["ternary"]) == {"image"} and "tokenizer" not in manifest
    assert not any(name.startswith("tokenizer/") for name in members)
    assert verify_bundle(bundle.path)["labels"]["count"] == len(bundle.labels)


def test_embeddings_are_the_pytorch_text_towers_of_the_prompted_labels(baked, tiny_clip_ternary):
    import torch

    from edgeclip.models.families import family
    from edgeclip.models.model_io import load_model

    bundle, members, manifest = baked
    stored = np.load(io.BytesIO(members["labels/embeddings.npy"]))
    model, _ = load_model(tiny_clip_ternary)
    clip = family("hf-clip")
    tower = clip.towers(model)["text"]
    tokenize = clip.text.tokenizer(clip.text.installed_vocab(), {"context_length": 77})
    for label, row in zip(bundle.labels, stored, strict=True):
        ids, mask = tokenize(prompted(bundle.prompt, label))
        with torch.no_grad():
            expected = tower.module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy().reshape(-1)
        cosine = float(row @ expected / np.linalg.norm(expected))
        assert cosine >= 0.9999, (label, cosine)
    assert not np.allclose(stored[0], stored[1]), "different labels, different embeddings"


def test_labels_from_a_string_and_from_a_file(tmp_path):
    assert parse_labels(" a cat, a dog ,,a red car ") == ["a cat", "a dog", "a red car"]
    listed = tmp_path / "labels.txt"
    listed.write_text("\n  t-shirt, top \n\nsneaker\n\n", encoding="utf-8")
    assert parse_labels(str(listed)) == ["t-shirt, top", "sneaker"]  # in a file a comma is part of a label
    assert prompted("a {} in {curly} braces", "{x}") == "a {x} in {curly} braces"


LABEL_REFUSALS = [
    ("empty string", "", "names no label"),
    ("only commas", " , ,", "names no label"),
    ("a duplicate", "a cat,a dog,a cat", "names 'a cat' twice"),
    ("a label over 256 bytes", "ok," + "é" * 129, "258 bytes in UTF-8, over the limit of 256"),
    ("10,001 labels", ",".join(f"l{i}" for i in range(10_001)), "names 10001 labels, over the limit of 10000"),
]


@pytest.mark.parametrize(("case", "spec", "fragment"), LABEL_REFUSALS, ids=[c[0] for c in LABEL_REFUSALS])
def test_a_bad_label_list_is_one_line_naming_it(case, spec, fragment):
    with pytest.raises(BundleError) as err:
        parse_labels(spec)
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_an_empty_or_undecodable_labels_file_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(BundleError, match=r"the labels file .*empty.txt names no label"):
        parse_labels(str(empty))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(BundleError, match="pass a UTF-8 file"):
        parse_labels(str(latin))


@pytest.mark.parametrize("prompt", ["a photo", "a {} and a {}", "{ }", "x" * 1025 + "{}"])
def test_a_prompt_without_exactly_one_slot_is_refused(prompt):
    with pytest.raises(BundleError, match="exactly one {}|over the limit of 1024"):
        check_prompt(prompt)


def _version(number: int):
    """The manifest as that older schema had it: no batch sizes besides 1 (version 3 added them),
    no CPU features (version 4)."""
    def edit(manifest: dict) -> None:
        older = older_schema(manifest, number)
        manifest.clear()
        manifest.update(older)
    return edit


SCHEMA_FAULTS = [
    ("count 0", edit_field("labels.count", 0), "field `labels.count` is 0, not a label count from 1 to 10000"),
    ("count 10001", edit_field("labels.count", 10_001), "`labels.count` is 10001"),
    ("count true", edit_field("labels.count", True), "`labels.count` is True"),
    ("count a string", edit_field("labels.count", "5"), "`labels.count` is '5'"),
    ("names not a member", edit_field("labels.names", "../names.txt"), "`labels.names` is '../names.txt', not a member"),
    ("embeddings missing", edit_field("labels.embeddings", KeyError), "`labels.embeddings` is None, not a member"),
    ("prompt empty", edit_field("labels.prompt", ""), "`labels.prompt` is '', not a text of 1 to 1024 characters"),
    ("prompt a number", edit_field("labels.prompt", 3), "`labels.prompt` is 3"),
    ("labels a list", edit_field("labels", ["a cat"]), "field `labels` is ['a cat'], not an object"),
    ("labels in a version 1 bundle", _version(1), "field `labels` needs bundle schema version 2"),
    ("version 7", edit_field("schema_version", 7), "schema version 7 is not supported (this edgeclip reads 1, 2, 3, 4, 5, 6)"),
]


@pytest.mark.parametrize(("case", "edit", "fragment"), SCHEMA_FAULTS, ids=[c[0] for c in SCHEMA_FAULTS])
def test_the_schema_refuses_a_damaged_labels_entry(baked, case, edit, fragment):
    manifest = copy.deepcopy(baked[2])
    check_manifest(manifest, "b.edgeclip")  # the real manifest passes
    edit(manifest)
    with pytest.raises(BundleError) as err:
        check_manifest(manifest, "b.edgeclip")
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_version_1_manifest_without_labels_is_still_read(baked):
    manifest = copy.deepcopy(baked[2])
    del manifest["labels"]
    _version(1)(manifest)
    check_manifest(manifest, "old.edgeclip")
