"""edgeclip: ternary CLIP and embedding encoders, compiled for edge devices."""

__version__ = "0.1.0"
