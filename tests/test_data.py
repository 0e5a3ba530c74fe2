"""Training data: Fashion-MNIST idx files, caption tables, tar shards, the sentence corpus."""

import gzip

import numpy as np
import pytest
import torch
from training_fixtures import colour_image, png_bytes, write_caption_folder, write_shard

from edgeclip.errors import TrainingError
from edgeclip.training.corpus import gloss_definition, load_fortunes, load_wordnet_glosses, split_sentences
from edgeclip.training.data import (
    CaptionTable,
    TarShards,
    captioned,
    epoch_order,
    load_fashion_mnist,
    open_pairs,
    read_idx,
)


def test_idx_reader_round_trips_and_rejects_truncation(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    (tmp_path / "ok.gz").write_bytes(gzip.compress(header + array.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "ok.gz"), array)
    (tmp_path / "short").write_bytes(header + array.tobytes()[:-1])
    with pytest.raises(TrainingError, match="truncated"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_splits_are_apart_and_balanced():
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert len(train.classes) == 10 and len(train.templates) * len(train.classes) == 80
    with pytest.raises(TrainingError, match="split"):
        load_fashion_mnist("validation")


def test_prompt_batches_share_one_template_and_index_captions_by_class():
    data = load_fashion_mnist("test")
    batch = data.batch_at(step=3, batch_size=64, seed=0)
    assert len(batch.texts) == len(set(batch.labels.tolist())) <= 10
    template = next(t for t in data.templates if batch.texts[0] == t.format(data.classes[int(batch.labels[0])]))
    for label, index in zip(batch.labels.tolist(), batch.text_index.tolist(), strict=True):
        assert batch.texts[index] == template.format(data.classes[label])


def test_epoch_order_is_a_seeded_permutation_stitched_across_epochs():
    first_epoch = np.concatenate([epoch_order(10, 4, s, seed=1) for s in range(2)] + [epoch_order(10, 4, 2, 1)[:2]])
    assert sorted(first_epoch.tolist()) == list(range(10))
    np.testing.assert_array_equal(epoch_order(10, 4, 7, seed=1), epoch_order(10, 4, 7, seed=1))
    assert not np.array_equal(epoch_order(1000, 8, 0, seed=1), epoch_order(1000, 8, 0, seed=2))


def test_shards_of_a_batch_cover_it_once():
    images = [np.full((2, 2), i, np.uint8) for i in range(6)]
    batch = captioned(images, ["a", "b", "a", "c", "b", "a"])
    halves = [batch.shard(r, 2) for r in range(2)]
    seen = [(int(img[0, 0]), half.texts[int(i)]) for half in halves for img, i in zip(half.images, half.text_index, strict=True)]
    assert sorted(seen) == sorted((i, t) for i, t in enumerate(["a", "b", "a", "c", "b", "a"]))


@pytest.mark.parametrize("table", ["csv", "jsonl"])
def test_caption_table_skips_and_counts_unreadable_images(tmp_path, table):
    path = write_caption_folder(tmp_path, count=6, table=table, broken=2)
    source = open_pairs(str(tmp_path))
    assert isinstance(source, CaptionTable) and len(source) == 8
    samples = list(source)
    assert len(samples) == 6 and source.skipped == 2
    assert samples[0][0].shape == (32, 32, 3) and samples[0][1] == "a red square number 0"
    assert open_pairs(str(path)).rows == source.rows


def test_caption_table_without_caption_column_is_an_error(tmp_path):
    (tmp_path / "captions.csv").write_text("image,label\nx.png,3\n")
    with pytest.raises(TrainingError, match="caption"):
        CaptionTable(tmp_path / "captions.csv")


def test_tar_shards_stream_pairs_and_count_broken_samples(tmp_path):
    good = png_bytes(colour_image("blue", 0))
    write_shard(tmp_path / "000000.tar", [("a", good, "first"), ("b", b"garbage", "broken image"), ("c", good, None)])
    write_shard(tmp_path / "000001.tar", [("d", good, "second"), ("e", good, "third")])
    source = open_pairs(str(tmp_path))
    assert isinstance(source, TarShards)
    assert [caption for _, caption in source] == ["first", "second", "third"]
    assert source.skipped == 2


def test_tar_batches_resume_at_the_same_samples(tmp_path):
    good = png_bytes(colour_image("red", 0))
    write_shard(tmp_path / "000000.tar", [(f"k{i}", good, f"caption {i}") for i in range(7)])
    sequential = TarShards([tmp_path / "000000.tar"])
    texts = [sequential.batch_at(step, 3, seed=0).texts for step in range(4)]
    assert texts[1] == ["caption 3", "caption 4", "caption 5"]
    assert texts[2] == ["caption 6", "caption 0", "caption 1"]  # wraps into the next pass
    assert TarShards([tmp_path / "000000.tar"]).batch_at(2, 3, seed=0).texts == texts[2]


def test_truncated_shard_keeps_what_was_readable(tmp_path):
    good = png_bytes(colour_image("green", 0))
    path = write_shard(tmp_path / "000000.tar", [(f"k{i}", good, f"c{i}") for i in range(3)])
    path.write_bytes(path.read_bytes()[: len(good) + 1500])
    source = TarShards([path])
    assert [c for _, c in source] == ["c0"] and source.skipped >= 1


def test_unknown_data_spec_says_what_is_accepted(tmp_path):
    with pytest.raises(TrainingError, match="captions"):
        open_pairs(str(tmp_path / "nothing"))


def test_sentence_splitting_drops_attributions_and_short_fragments():
    fortune = "The sky is blue today and the sun shines bright. Go!\n\t\t-- Someone Famous, 1999"
    assert split_sentences(fortune) == ["The sky is blue today and the sun shines bright."]


def test_fortunes_corpus_holds_out_a_fixed_disjoint_set():
    corpus = load_fortunes()
    assert len(corpus.held_out) == 1000 and len(corpus.train) > 15000
    assert not set(corpus.held_out) & set(corpus.train)
    assert all(6 <= len(s.split()) <= 40 for s in corpus.held_out)
    assert load_fortunes().held_out == corpus.held_out
    assert torch.tensor(corpus.batch_at(5, 16, seed=0)).unique().numel() == 16


def test_wordnet_gloss_is_the_definition_before_its_examples():
    line = ('00002452 03 n 01 thing 0 009 @ 00001930 n 0000 | a separate and self-contained entity; '
            '"the thing stood  alone"; "another example"  ')
    assert gloss_definition(line) == "a separate and self-contained entity"
    assert gloss_definition("  1 This software and database is being provided to you") is None


def test_wordnet_glosses_are_a_fixed_set_training_never_sees():
    glosses = load_wordnet_glosses()
    assert len(glosses) == 1000 == len(set(glosses))
    assert all(6 <= len(g.split()) <= 40 and '"' not in g for g in glosses)
    assert load_wordnet_glosses() == glosses
    assert not set(glosses) & set(load_fortunes().train)


def test_missing_wordnet_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLIP_WORDNET", str(tmp_path))
    with pytest.raises(TrainingError, match="apt-get install wordnet-base"):
        load_wordnet_glosses()
