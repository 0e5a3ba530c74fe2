"""Load a Hugging Face CLIPModel from a local directory, never from the hub."""

from transformers import CLIPModel

from edgeclip.models.local_dir import checked_model_dir, load_pretrained_strict, require_model_type


def load_hf_clip(path) -> CLIPModel:
    """Load config.json + weights from `path` in float32, eval mode; any problem is a ModelError."""
    directory, config = checked_model_dir(path, "CLIP model")
    require_model_type(config, "clip", directory)
    return load_pretrained_strict(CLIPModel, directory, "CLIP model")
