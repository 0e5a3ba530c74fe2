"""One exception type per layer; the CLI catches `EdgeclipError` once and prints one line.

Every message says what went wrong and what to do about it.
"""


class EdgeclipError(Exception):
    """Base of every error edgeclip raises on purpose."""


class ToolchainError(EdgeclipError):
    """A native tool (cross compiler, emulator, target runtime wheel) is missing or failed."""


class QuantError(EdgeclipError):
    """Ternarization was asked for something it cannot do (bad granularity, policy, shape)."""


class ModelError(EdgeclipError):
    """A model directory, state dict or tokenizer vocabulary is missing or malformed."""


class CheckpointError(EdgeclipError):
    """A checkpoint on disk is truncated, corrupted or does not match its config."""


class TrainingError(EdgeclipError):
    """Training or evaluation was configured wrongly or its data is unusable."""


class KernelError(EdgeclipError):
    """A ternary kernel could not be built or checked for a target family."""


class TargetError(EdgeclipError):
    """A board description is missing or malformed."""


class BundleError(EdgeclipError):
    """A device bundle is malformed, tampered with, or built for another device."""


class RemoteError(EdgeclipError):
    """Talking to a device over SSH failed: connection, host key, auth, upload, install or run."""


class FlashError(EdgeclipError):
    """A bundle could not be sent to, or was refused by, a device over a serial line."""


class DemoError(EdgeclipError):
    """`edgeclip demo` finished, but a step of it failed (the report says which and why)."""
