"""Model loaders: HF CLIP directories, open_clip state dicts, MiniLM, tokenizer, preprocessing."""

from edgeclip.models.hf_clip import load_hf_clip
from edgeclip.models.minilm import SentenceEncoder, load_minilm, minilm_path
from edgeclip.models.open_clip_state import load_open_clip_state_dict, to_open_clip_state_dict
from edgeclip.models.preprocess import CLIP_MEAN, CLIP_STD, preprocess_batch, preprocess_image
from edgeclip.models.tiny import make_tiny_clip, make_tiny_clip_dir, tiny_clip_config
from edgeclip.models.tokenizer import ClipTokenizer

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ClipTokenizer",
    "SentenceEncoder",
    "load_hf_clip",
    "load_minilm",
    "load_open_clip_state_dict",
    "make_tiny_clip",
    "make_tiny_clip_dir",
    "minilm_path",
    "preprocess_batch",
    "preprocess_image",
    "tiny_clip_config",
    "to_open_clip_state_dict",
]
