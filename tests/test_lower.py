"""Whole-model lowering: ternary students compiled for the host equal their PyTorch selves.

Inputs are real: Fashion-MNIST test images, scikit-image photographs, captions through the CLIP
tokenizer and English sentences through MiniLM's tokenizer. Each tower is imported once and
built for both activation modes (compiling dominates the runtime of this file).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_fixtures import make_tiny_clip
from skimage import data as skdata

from edgeclip.errors import ModelError, TargetError
from edgeclip.lower.build import build_tower, compile, load_compiled
from edgeclip.lower.importer import import_tower
from edgeclip.lower.rewrite import split_ternary_rows
from edgeclip.lower.target import resolve_target
from edgeclip.models.families import family_of, model_towers
from edgeclip.models.model_io import save_model
from edgeclip.models.preprocess import preprocess_image
from edgeclip.models.tokenizer import ClipTokenizer
from edgeclip.quant import TernaryConfig, freeze, quantize, ternary_layers
from edgeclip.targets import load_target
from edgeclip.training.data import load_fashion_mnist

MIN_COSINE = {"fp32": 0.999, "int8": 0.995}
SENTENCES = [
    "A man is riding a horse along the beach.",
    "The quarterly report shows revenue grew by twelve percent.",
    "Two children are playing chess in the park.",
    "Preheat the oven to 200 degrees before baking the bread.",
    "The satellite entered a stable orbit after three days.",
    "She forgot her umbrella and got soaked on the way home.",
    "Neural networks can be compressed with ternary weights.",
    "The museum opens at nine and closes at five.",
]
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ternary_student(model):
    quantize(model, TernaryConfig(policy="q-all"))
    freeze(model)
    return model.eval()


def build_both_acts(model, seq_len=None):
    """{act: {tower: CompiledTower}} with one import per tower."""
    target = resolve_target("x86-64")
    built = {"fp32": {}, "int8": {}}
    for name, tower in model_towers(model, seq_len=seq_len).items():
        mod = import_tower(tower)
        for act in built:
            built[act][name] = build_tower(mod, tower, target, act)
    return built


@pytest.fixture(scope="module")
def clip_student():
    return ternary_student(make_tiny_clip(seed=3))


@pytest.fixture(scope="module")
def clip_built(clip_student):
    return build_both_acts(clip_student)


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist("test")


def clip_pixels(images, size):
    return torch.stack([preprocess_image(image, size) for image in images]).numpy()


def clip_text(texts):
    ids = ClipTokenizer()(texts).numpy()
    return ids, (ids != 0).astype(np.int64)


def run_each(tower, *batches):
    """The compiled tower is batch 1: run it sample by sample."""
    return np.concatenate([tower(*(b[i : i + 1] for b in batches)) for i in range(len(batches[0]))])


# ---- rewrite -------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(16, 40), st.integers(16, 80), st.integers(0, 2**31 - 1))
def test_ternary_weights_are_recovered_exactly_from_dequantized_constants(n, k, seed):
    rng = np.random.default_rng(seed)
    trits = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
    trits[rng.random(n) < 0.1] = 0  # all-zero rows keep a finite scale
    scale = rng.uniform(1e-4, 3, size=n).astype(np.float32)
    split = split_ternary_rows(trits.astype(np.float32) * scale[:, None])
    assert split is not None
    np.testing.assert_array_equal(split[0], trits)
    live = np.abs(trits).sum(axis=1) > 0
    np.testing.assert_array_equal(split[1][live], scale[live])


def test_float_weights_are_not_mistaken_for_ternary():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 64)).astype(np.float32)
    assert split_ternary_rows(weight) is None
    nearly = np.sign(weight) * np.float32(0.5)
    nearly[3, 7] = np.float32(0.25)  # one value off the {-s, 0, s} grid
    assert split_ternary_rows(nearly) is None


def test_every_ternary_layer_becomes_a_kernel(clip_student, clip_built):
    layers = ternary_layers(clip_student)
    image_layers = [n for n in layers if n.startswith(("vision_model.", "visual_projection"))]
    text_layers = [n for n in layers if n.startswith(("text_model.", "text_projection"))]
    assert len(image_layers) + len(text_layers) == len(layers)
    for act in ("fp32", "int8"):
        image, text = clip_built[act]["image"].report, clip_built[act]["text"].report
        assert image.total == len(image_layers) and image.convs == 1
        assert text.total == len(text_layers) and text.embeddings >= 1
        assert clip_built[act]["image"].unscheduled == [] and clip_built[act]["text"].unscheduled == []


# ---- numerics: tiny HF CLIP, both towers -----------------------------------------------------------


@pytest.mark.parametrize("act", ["fp32", "int8"])
def test_image_tower_matches_torch_on_real_images(clip_student, clip_built, fashion, act):
    size = clip_student.config.vision_config.image_size
    images = list(fashion.images[:24]) + [getattr(skdata, name)() for name in SKIMAGE_PHOTOS]
    pixels = clip_pixels(images, size)
    with torch.no_grad():
        expected = clip_student.get_image_features(pixel_values=torch.from_numpy(pixels))
    expected = getattr(expected, "pooler_output", expected).numpy()
    got = run_each(clip_built[act]["image"], pixels)
    worst = min(cosine(g, e) for g, e in zip(got, expected, strict=True))
    assert worst >= MIN_COSINE[act], f"{act}: worst cosine {worst:.5f}"


@pytest.mark.parametrize("act", ["fp32", "int8"])
def test_text_tower_matches_torch_on_real_captions(clip_student, clip_built, fashion, act):
    captions = [p for c in range(len(fashion.classes)) for p in fashion.prompts(c)[:2]] + SENTENCES
    ids, mask = clip_text(captions)
    with torch.no_grad():
        expected = clip_student.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    expected = getattr(expected, "pooler_output", expected).numpy()
    got = run_each(clip_built[act]["text"], ids, mask)
    worst = min(cosine(g, e) for g, e in zip(got, expected, strict=True))
    assert worst >= MIN_COSINE[act], f"{act}: worst cosine {worst:.5f}"


def test_zero_shot_top1_agrees_with_torch_on_fashion_mnist(clip_student, clip_built, fashion):
    """Class prompts vs 500 test images: compiled (int8 activations) picks the torch class >= 99%."""
    ids, mask = clip_text([fashion.prompts(c)[0] for c in range(len(fashion.classes))])
    pixels = clip_pixels(fashion.images[:500], clip_student.config.vision_config.image_size)
    with torch.no_grad():
        t_img = clip_student.get_image_features(pixel_values=torch.from_numpy(pixels))
        t_txt = clip_student.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    t_img, t_txt = (getattr(t, "pooler_output", t).numpy() for t in (t_img, t_txt))
    built = clip_built["int8"]
    c_img, c_txt = run_each(built["image"], pixels), run_each(built["text"], ids, mask)

    def top1(img, txt):
        img = img / np.linalg.norm(img, axis=1, keepdims=True)
        txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
        return (img @ txt.T).argmax(axis=1)

    agreement = float((top1(c_img, c_txt) == top1(t_img, t_txt)).mean())
    assert agreement >= 0.99, f"top-1 agreement {agreement:.3f}"


# ---- numerics: text-only MiniLM student ------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from edgeclip.models.minilm import SentenceEncoder, load_minilm

    bert, tokenizer = load_minilm()
    return ternary_student(SentenceEncoder(bert)), tokenizer


@pytest.mark.slow
def test_minilm_student_matches_torch_on_real_sentences(minilm):
    student, tokenizer = minilm
    seq_len = 24
    built = build_both_acts(student, seq_len=seq_len)
    batch = tokenizer(SENTENCES, padding="max_length", max_length=seq_len, truncation=True, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)
    with torch.no_grad():
        expected = student(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    for act in ("fp32", "int8"):
        tower = built[act]["text"]
        live = [n for n in ternary_layers(student) if ".pooler." not in n]  # BERT's pooler is dead code
        assert tower.report.total == len(live) and tower.report.embeddings == 1
        worst = min(cosine(g, e) for g, e in zip(run_each(tower, ids, mask), expected, strict=True))
        assert worst >= MIN_COSINE[act], f"{act}: worst cosine {worst:.5f}"


# ---- the door: checkpoints, saving, errors ---------------------------------------------------------


def test_checkpoint_compiles_saves_and_reloads(tmp_path, clip_student, fashion):
    ckpt = save_model(clip_student, tmp_path / "ckpt", family_of(clip_student), clip_student.config.to_dict(), TernaryConfig())
    compiled = compile(ckpt, "x86-64", towers=["image"], act="int8")
    assert compiled.target.family in ("x86_avx2", "x86_avx512")
    pixels = clip_pixels(fashion.images[:3], clip_student.config.vision_config.image_size)
    before = run_each(compiled.towers["image"], pixels)
    out = compiled.save(tmp_path / "out")
    reloaded = load_compiled(out)
    np.testing.assert_array_equal(run_each(reloaded["image"], pixels), before)
    # the packed weights live beside the library, 5 trits a byte, not inside it
    packed = compiled.towers["image"].weights
    assert packed and len(reloaded["image"].weights) == len(packed)
    stored = sorted(out.glob("image.weight*.npy"))
    assert sum(np.load(p).nbytes for p in stored) == sum(-(-4 * w.size // 5) for w in packed)
    with pytest.raises(ModelError, match="shape"):
        reloaded["image"](pixels[:1, :, :8])


def test_unknown_target_and_tower_are_refused(clip_student):
    with pytest.raises(TargetError, match="x86-64"):
        resolve_target("pdp-11")
    with pytest.raises(ModelError, match="towers"):
        compile(clip_student, "x86-64", towers=["audio"])


# ---- targets: boards pick their kernel family -------------------------------------------------------


@pytest.mark.parametrize("board, family", [("rpi4", "arm_neon"), ("jetson-nano", "arm_neon"),
                                           ("generic-aarch64", "arm_neon"), ("rpi5", "arm_dotprod"),
                                           ("jetson-orin-nano", "arm_dotprod")])
def test_arm_boards_lower_with_their_family_for_aarch64(board, family):
    target = resolve_target(board)
    assert target.family == family and target.threads == target.board.cores
    assert target.tvm_target["mtriple"] == "aarch64-linux-gnu" and target.tvm_target["num-cores"] == target.threads
    assert resolve_target(board, threads=1).tvm().attrs["num-cores"] == 1


def test_x86_targets_name_fixed_families_whatever_this_host_has():
    """Nothing is compiled for the build host's CPU: each x86 target names its family and LLVM CPU."""
    v3, vnni = resolve_target("x86-64-v3"), resolve_target("x86-64-vnni")
    assert (v3.family, v3.tvm_target["mcpu"]) == ("x86_avx2", "x86-64-v3")
    assert (vnni.family, vnni.tvm_target["mcpu"]) == ("x86_avx512", "x86-64-v4")
    assert [m.name for m in load_target("x86-64").variants] == ["x86-64-vnni", "x86-64-v3"]


def test_arm_kernels_take_signed_int8_activations_and_no_weight_sum():
    from edgeclip.lower import kernels
    from edgeclip.schedules import arm_neon
    from edgeclip.schedules.ternary import LinearShape, pack_weights

    trits = np.random.default_rng(0).integers(-1, 2, (24, 40)).astype(np.int8)
    rpi4, host = kernels.family(resolve_target("rpi4")), kernels.family(resolve_target("x86-64"))
    assert rpi4 is arm_neon
    (packed,) = rpi4.pack_weights(trits, "int8")
    np.testing.assert_array_equal(packed, pack_weights(trits, arm_neon.FAMILY.tile_n)["w_packed"])
    assert len(host.pack_weights(trits, "int8")) == 2  # u8 x s8 needs the weight sums
    assert rpi4.FAMILY.always_bias  # so the rewrite gives a layer without a bias zeros
    func = rpi4.linear_primfunc(LinearShape(5, 40, 24, "channel", "int8", bias=True), 4)
    assert [p.name for p in func.params] == ["x", "w_packed", "scale", "bias", "y"]


def test_a_family_for_another_kind_of_target_is_refused():
    """The CUDA family exports the same interface but is not wired into CPU lowering."""
    from dataclasses import replace

    from edgeclip.errors import KernelError
    from edgeclip.lower import kernels

    with pytest.raises(KernelError, match="cuda kernels, but rpi4 lowers for llvm"):
        kernels.family(replace(resolve_target("rpi4"), family="cuda"))


def test_rpi4_compile_saves_aarch64_libraries(tmp_path, clip_student):
    """Lowering for a board other than the host: the arm_neon kernels replace every ternary layer
    and `save` links the module with the board's cross compiler. (The numbers are checked under
    qemu-user by tests/test_bundle.py, which runs such modules through the native runner.)"""
    import json

    from edgeclip.errors import ToolchainError
    from edgeclip.formats.bundle import elf_arch
    from edgeclip.native.toolchain import require_compiler

    try:
        require_compiler(*resolve_target("rpi4").board.compiler)
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross compiler: {err}")
    compiled = compile(clip_student, "rpi4", towers=["image"], act="int8")
    report = compiled.towers["image"].report
    assert compiled.target.family == "arm_neon" and report.linears > 0 and report.convs == 1
    out = compiled.save(tmp_path / "rpi4")
    assert elf_arch((out / "image.so").read_bytes()[:64]) == "aarch64"
    assert json.loads((out / "compiled.json").read_text())["tvm_target"]["mcpu"] == "cortex-a72"
