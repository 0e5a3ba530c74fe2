"""Flash bundles to devices over a serial line: framing (`protocol`), host sender (`host`), device agent (`agent`).

Only the standard library and pyserial are imported here (tqdm lazily, on the host), never torch or
TVM: the agent runs on bare boards.
"""
