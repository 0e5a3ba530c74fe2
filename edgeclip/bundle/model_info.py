"""What a bundle records about its model, so a device app can feed its towers: the manifest's
`model`, `tokenizer` and `preprocessing` fields and the tokenizer file it ships, all read off the
model family's descriptor (`edgeclip.models.families`); and the way back, from a manifest to the
family that turns images and text into tower inputs in Python (`local.classify_images`, the host-preprocessing path, and reference inputs).
The tokenizer used at run time is the file inside the bundle, so a bundle classifies the same on
any machine whatever edgeclip or transformers is installed there.
"""

from __future__ import annotations

from PIL import Image

from edgeclip.errors import BundleError, ModelError
from edgeclip.models.families import all_families, family
from edgeclip.models.families.base import ModelFamily

TEXT_INPUTS = ["input_ids", "attention_mask"]
MAX_IMAGE_PIXELS = 64 * 10**6  # a 64-megapixel photo decodes to ~200 MB; anything larger is refused unread


def bundle_family(name: str) -> ModelFamily:
    """The family `name`, if bundles can be built for it."""
    bundled = [f.name for f in all_families().values() if f.bundled]
    try:
        found = family(name)
    except ModelError:
        found = None
    if found is None or not found.bundled:
        raise BundleError(f"bundles are built for model families {', '.join(bundled)}, not {name!r}; "
                          "train or ternarize a model of one of those families")
    return found


def manifest_family(manifest: dict) -> ModelFamily:
    """The family a bundle's manifest names (`model.family`)."""
    name = (manifest.get("model") or {}).get("family")
    if name is None:
        raise BundleError("this bundle's manifest names no model family; rebuild it with `edgeclip build`")
    return bundle_family(name)


def model_info(found: ModelFamily, config: dict, context_length: int | None) -> dict:
    """Manifest fields a device app needs: model, tokenizer (when there is a text tower), preprocessing."""
    quant = config.get("quant") or {}
    info = {
        "model": {"family": found.name, "arch": config["arch"],
                  "quant": {k: v for k, v in quant.items() if k != "layers"} or None},
    }
    if found.image is not None:  # a text-only family (sentence encoders) has no preprocessing
        info["preprocessing"] = found.image.preprocessing(config["arch"])
    if context_length is not None:
        try:
            fields = {**found.text.fields, **found.text.arch_fields(config["arch"])}
        except ModelError as err:
            raise BundleError(str(err)) from err
        info["tokenizer"] = {**fields, "vocab": found.text.vocab_member,
                             "context_length": context_length, "inputs": TEXT_INPUTS, "dtype": "int64",
                             "padding": 0}
    return info


def tokenizer_files(found: ModelFamily) -> dict[str, bytes]:
    return {found.text.vocab_member: found.text.installed_vocab().read_bytes()}


def read_image(path) -> Image.Image:
    """The decoded image; its header's pixel count is checked before anything is decoded."""
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise BundleError(f"the image {path} is {width}x{height}, over the {MAX_IMAGE_PIXELS // 10**6} "
                                  "megapixel limit; scale it down first")
            image.load()
            return image
    except Image.DecompressionBombError as err:  # PIL's own, larger limit, met while opening
        raise BundleError(f"the image {path} is over the {MAX_IMAGE_PIXELS // 10**6} megapixel limit; "
                          "scale it down first") from err
    except (OSError, UnidentifiedImageError) as err:
        raise BundleError(f"cannot read the image {path} ({err}); pass a PNG or JPEG file") from err
