"""Test-only parts of the emulated devices: pytest fixtures, network/memory faults and synthetic
bundles with a stand-in runner. The devices themselves (sshd, network namespace, arm64 userland)
are `edgeclip.testbed`, which `edgeclip demo` uses too."""
