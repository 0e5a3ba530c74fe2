"""Emulated devices: an sshd with its own keys on loopback or in a network namespace, and an arm64
Debian userland run through qemu-user, so a real rpi4 bundle can be deployed and profiled "on the
board" without one. Used by the remote tests and by `edgeclip demo`; needs root. Everything it
starts is torn down by PID. No torch or TVM here (like `edgeclip.remote`)."""
