"""`edgeclip-runner tokenize`: the runner's C++ tokenizers (CLIP BPE, BERT WordPiece) give exactly
the ids and masks of the host tokenizers, on the fortunes corpus and on crafted hard inputs, for
the host runner and (on a sample) the aarch64 runner under qemu; the real bundle's plan names its
tokenizer; the generated Unicode tables are what the generator writes today."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeclip.bundle import local
from edgeclip.bundle.build import REFERENCE_TEXT, tokenizer_plan_line
from edgeclip.bundle.model_info import TEXT_INPUTS, tokenizer_files
from edgeclip.errors import ToolchainError
from edgeclip.models.families import family
from edgeclip.native import runtime_libs, toolchain
from edgeclip.targets import load_target
from edgeclip.training.corpus import load_fortunes

HOST = ("g++", "g++", "manylinux_2_28_x86_64")
FAMILIES = {"clip-bpe": "hf-clip", "wordpiece": "demo-clip"}
CONTEXTS = {"clip-bpe": (77, 512), "wordpiece": (32, 512)}  # what bundles use, and one truncation cannot hide behind

CRAFTED = [
    "", " ", "\t\n\r ", "a", "A photo of a CAT.", "  leading and trailing  ", "tabs\tand\nnewlines\r\nand\x0bvt\x0cff",
    "naïve café résumé Ångström façade", "Ελληνικά: ΟΔΟΣ Σίσυφος ΣΑΣ. ΑΣ", "Türkçe İstanbul IŞIK ıi",
    "Straße STRASSE ẞ", "ﬁnancial ﬂow ﬀ ﬃ Ǆ ǅ ǆ", "中文分词测试，你好！", "日本語のテキスト、カタカナ、ひらがな",
    "한국어 텍스트 안녕하세요", "العربية نص مع تشكيل: مُحَمَّد", "Русский текст: Ёлка и ёж", "עברית עם ניקוד: שָׁלוֹם",
    "emoji 😀👍🏽👨‍👩‍👧 🇫🇷 ❤️", "e\u0301 vs é, a\u0308\u0301, \u1e9b\u0323, q\u0307\u0323, \u0345\u0391\u0345",
    "combining: o\u0302\u0323 \u0061\u0328\u0301 \u00c5\u0316", "\u2126 \u212b \u1e0a\u0323 \u0958 \uf900 \u2f800",
    "&amp; &amp;amp; &lt;b&gt; &quot;q&quot; &eacute; &eacute &Eacute; &copy &copysign; &notit; &notin;",
    "&#x1F600; &#128512; &#0; &#x0; &#13; &#128; &#x80; &#x9F; &#xD800; &#x110000; &#99999999999999999999;",
    "&#1; &#x0B; &#xFFFE; &#65; &#x41 &#65x &#; &#x; &#xZ; &; & amp; &ampx; &amp &AMP; &AMP",
    "&unknown; &zzz &ampersand &nbsp;&nbsp;x &NotEqualTilde; &acE; &ThickSpace; &#x2028;",
    "&amp;eacute; &amp;#x41; &amp;amp;amp; &&amp;&", "&" + "a" * 40 + ";", "&frac12; &frac34 &sup2 &times;",
    "control \x01 \x07 \x1b \x7f \x85 \x9f chars \u200b\u200d\u2060\ufeff\u00ad \ufffd \ue000 \U000f0000",
    "\x1c\x1d\x1e\x1f file separators \x1f", "\u3000ideographic\u3000space\u2003em\u00a0nbsp\u2028ls\u2029ps",
    "!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ ~~~ ``` ''' \"\"\" ((( ))) [[[ ]]] {{{ }}} <<< >>> ||| \\\\",
    "it's don't we're they've I'm you'll he'd IT'S DON'T WE'RE 's 't 'RE", "'ſ 'ſtart <|ſtartoftext|> <|ſt",
    "<|startoftext|> hello <|endoftext|> world <|endoftext|>", "<|STARTOFTEXT|> <|EndOfText|>",
    "[CLS] [SEP] [PAD] [MASK] [UNK] [cls] [SEP][SEP] a[MASK]b [SE P] [[SEP]] [PAD][PAD]",
    "numbers 1234567890 ١٢٣ ४५६ ½ ² ³ Ⅻ ⅻ ① 12.5% 3,000,000", "math ∑∫∂√∞≠≤≥ ± × ÷ → ⇒ ∀∃",
    "quotes “curly” ‘single’ «guillemets» „low“ — en – dash … ellipsis • bullet",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ", "ĀāĂăĄąĆćĈĉĊċČčĎď ǅ ǈ ǋ ǲ",
    "\U0001d400\U0001d41a \U0001d7d8 \U0001f170 \U00010400\U00010428 \U0001e900", "\U0001d165\U0001d16e\u0f39\u0301x",
    "supercalifragilisticexpialidocious" * 5, "x" * 101, "y" * 100, "word " * 300, "字" * 600,
    " ".join(["antidisestablishmentarianism"] * 60), "a,b.c;d:e!f?g", "👍" * 200,
]


def _texts(sample: int | None = None) -> list[str]:
    fortunes = load_fortunes()
    sentences = fortunes.held_out + fortunes.train
    if sample is not None:
        sentences = sentences[:: max(1, len(sentences) // sample)][:sample]
    return CRAFTED + sentences


def _bundle_folder(root, runner, wheel_platform: str, kind: str, context: int):
    """A bundle folder with what `tokenize` reads: bin/, lib/ (libedgeclip, which tokenizes, and the
    TVM runtime), the vocabulary file and runner.plan,
    the plan line written by the bundle writer; and the host tokenizer of the same manifest fields."""
    found = family(FAMILIES[kind])
    fields = {**found.text.fields, "vocab": found.text.vocab_member, "context_length": context, "inputs": TEXT_INPUTS}
    folder = root / f"{kind}-{context}"
    for member, data in tokenizer_files(found).items():
        (folder / member).parent.mkdir(parents=True, exist_ok=True)
        (folder / member).write_bytes(data)
    (folder / "bin").mkdir()
    shutil.copy(runner, folder / "bin" / "edgeclip-runner")
    (folder / "lib").mkdir()
    shutil.copy(toolchain.runtime_library(*_compiler_of(wheel_platform)), folder / "lib" / toolchain.LIBRARY_NAME)
    for name in runtime_libs.LIBRARIES.values():
        shutil.copy(runtime_libs.runtime_dir(wheel_platform) / name, folder / name)
    (folder / "runner.plan").write_text(f"# edgeclip runner plan 1\n{tokenizer_plan_line(fields)}\n")
    return folder, found.text.tokenizer(found.text.installed_vocab(), fields)


def _compiler_of(wheel_platform: str) -> tuple[str, str, str]:
    return HOST if wheel_platform == HOST[2] else (*load_target("rpi4").compiler, wheel_platform)


def _tokenize(prefix: list[str], folder, texts: list[str], tmp_path) -> list[dict]:
    """One runner process: texts without a newline through --text-file, the others as --text."""
    in_file = [t for t in texts if "\n" not in t]
    as_args = [t for t in texts if "\n" in t]
    lines = tmp_path / "texts.txt"
    lines.write_bytes("\n".join(in_file).encode() + b"\n")
    cmd = [*prefix, str(folder / "bin" / "edgeclip-runner"), "tokenize", "--bundle", str(folder),
           "--text-file", str(lines)]
    for text in as_args:
        cmd += ["--text", text]
    done = subprocess.run(cmd, capture_output=True, timeout=1200)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(rows) == len(texts)
    by_text = dict(zip(in_file + as_args, rows, strict=True))
    return [by_text[t] for t in texts]


def _assert_parity(prefix, folder, host_tokenize, texts, tmp_path, context):
    rows = _tokenize(prefix, folder, texts, tmp_path)
    mismatches = []
    for text, row in zip(texts, rows, strict=True):
        ids, mask = host_tokenize(text)
        assert len(row["ids"]) == len(row["mask"]) == context
        if row["ids"] != ids[0].tolist() or row["mask"] != mask[0].tolist():
            mismatches.append((text, row["ids"][:20], ids[0].tolist()[:20], sum(row["mask"]), int(mask.sum())))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


@pytest.fixture(scope="module")
def host_runner():
    return toolchain.runner_binary(*HOST)


@pytest.fixture(scope="module")
def corpus():
    texts = _texts()
    assert len(texts) >= 5000
    return texts


@pytest.mark.parametrize("kind", sorted(FAMILIES))
@pytest.mark.parametrize("long_context", [False, True])
def test_host_runner_matches_host_tokenizer(host_runner, corpus, kind, long_context, tmp_path):
    context = CONTEXTS[kind][long_context]
    folder, host_tokenize = _bundle_folder(tmp_path, host_runner, HOST[2], kind, context)
    _assert_parity([], folder, host_tokenize, corpus, tmp_path, context)


def _aarch64_runner():
    target = load_target("rpi4")
    try:
        prefix = toolchain.emulator_command(target.arch)
        return prefix, toolchain.runner_binary(*target.compiler, target.wheel_platform), target.wheel_platform
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross compiler and qemu-aarch64: {err}")


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_aarch64_runner_under_qemu_matches_host_tokenizer(kind, tmp_path):
    prefix, runner, wheel_platform = _aarch64_runner()
    context = CONTEXTS[kind][0]
    folder, host_tokenize = _bundle_folder(tmp_path, runner, wheel_platform, kind, context)
    _assert_parity(prefix, folder, host_tokenize, _texts(sample=250), tmp_path, context)


def test_real_bundle_tokenizes_its_reference_prompt(tiny_clip_rpi4_bundle):
    """`build_bundle` writes the tokenizer line; the device's ids and mask are the reference inputs."""
    with local.extracted(tiny_clip_rpi4_bundle) as (folder, manifest):
        plan = (folder / "runner.plan").read_text()
        assert tokenizer_plan_line(manifest["tokenizer"]) in plan.splitlines()
        cmd = local.runner_command(folder, manifest, emulate=True) + ["tokenize", "--text", REFERENCE_TEXT]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout)
        ids, mask = (np.load(folder / item["path"]) for item in manifest["reference"]["text"]["inputs"])
        assert row == {"ids": ids[0].tolist(), "mask": mask[0].tolist()}


def _clip_folder_with_vocab(tmp_path, host_runner, vocab: bytes):
    folder, host_tokenize = _bundle_folder(tmp_path, host_runner, HOST[2], "clip-bpe", 77)
    (folder / family("hf-clip").text.vocab_member).write_bytes(vocab)
    return folder, host_tokenize


def test_inflate_reads_stored_blocks_and_several_members(host_runner, tmp_path):
    """Python's gzip takes a level-0 file split into two members; so does the runner's inflate."""
    text = gzip.decompress(tokenizer_files(family("hf-clip"))[family("hf-clip").text.vocab_member])
    half = len(text) // 2
    vocab = gzip.compress(text[:half], compresslevel=0) + gzip.compress(text[half:], compresslevel=1)
    assert gzip.decompress(vocab) == text
    folder, host_tokenize = _clip_folder_with_vocab(tmp_path, host_runner, vocab)
    _assert_parity([], folder, host_tokenize, CRAFTED, tmp_path, 77)


def test_corrupt_vocabulary_is_refused(host_runner, tmp_path):
    vocab = bytearray(tokenizer_files(family("hf-clip"))[family("hf-clip").text.vocab_member])
    vocab[-8] ^= 0xFF  # the CRC-32
    folder, _ = _clip_folder_with_vocab(tmp_path, host_runner, bytes(vocab))
    done = subprocess.run([str(folder / "bin" / "edgeclip-runner"), "tokenize", "--text", "a"],
                          capture_output=True, text=True)
    assert done.returncode == 3 and "CRC-32 or length differs" in done.stderr


def test_plan_without_tokenizer_and_missing_text_are_usage_errors(host_runner, tmp_path):
    folder, _ = _bundle_folder(tmp_path, host_runner, HOST[2], "wordpiece", 32)
    runner = str(folder / "bin" / "edgeclip-runner")
    done = subprocess.run([runner, "tokenize"], capture_output=True, text=True)
    assert done.returncode == 2 and "tokenize needs --text or --text-file" in done.stderr
    (folder / "runner.plan").write_text("# edgeclip runner plan 1\n")
    done = subprocess.run([runner, "tokenize", "--text", "a"], capture_output=True, text=True)
    assert done.returncode == 2 and "has no tokenizer line; rebuild the bundle" in done.stderr


def _generator():
    """scripts/gen_unicode_tables.py, a development tool outside the package, loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "gen_unicode_tables.py"
    spec = importlib.util.spec_from_file_location("gen_unicode_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unicode_tables_header_is_what_the_generator_writes():
    gen_unicode_tables = _generator()
    assert gen_unicode_tables.render() == gen_unicode_tables.HEADER.read_text(encoding="utf-8"), (
        "unicode_tables.h is stale: run `.venv/bin/python scripts/gen_unicode_tables.py`")
    assert gen_unicode_tables.HEADER.stat().st_size < 400_000
