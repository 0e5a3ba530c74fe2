"""Flash bundles to devices over a serial line: the host sender (`host`) and the device agent
(`agent`); the frames they exchange are `edgeclip.formats.serial`.

Only the standard library and pyserial are imported here (tqdm lazily, on the host), never torch or
TVM: the agent runs on bare boards.
"""
