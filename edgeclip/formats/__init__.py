"""File and wire formats, each with one validated schema: the bundle (manifest, members, module
variants and their output-check floors), the checkpoint config, the serial frames.

Standard library only: the device agent, `remote` and `flash` read these without torch or tvm.
"""
