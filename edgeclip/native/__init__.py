"""Native code and the tools that build and run it: the target's TVM runtime libraries (from the
pinned wheels), cross compiling programs against them (the bundle runner, the kernel test harness),
exporting compiled modules, and emulating foreign binaries. Imports no torch; tvm only lazily to
export a module.
"""
