"""Emulated devices for the remote tests: loopback and network-namespace sshd, an arm64 userland
run through qemu-user, and network/memory faults. Everything is torn down by PID."""
