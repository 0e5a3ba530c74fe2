"""Board descriptions as TOML data (installed as `edgeclip.targets`)."""

from .loader import Target, list_targets, load_target, load_target_file, with_cuda_arch

__all__ = ["Target", "list_targets", "load_target", "load_target_file", "with_cuda_arch"]
