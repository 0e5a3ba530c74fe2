"""A device = an `sshd` with a generated host key and authorized user key, in its own mount namespace
where the login user's home is a fresh folder (or a small tmpfs, to make a full disk). Optionally
inside a network namespace, chrooted into an arm64 userland, or in a memory-limited cgroup.

The device logs in as root because the test bed runs as root; the home it sees is private to it,
so nothing on the test machine is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgeclip.remote.connect import SshOptions
from edgeclip.testbed.procs import kill_tree

SSHD = Path("/usr/sbin/sshd")


def missing_capability() -> str | None:
    """None when a loopback device can be started, else the exact thing that is missing."""
    if os.geteuid() != 0:
        return "root (euid 0) to run sshd and create mount namespaces"
    if not SSHD.exists():
        return f"{SSHD} (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command"
    return None


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Device:
    """A running emulated board and what a client needs to reach it."""

    address: str
    port: int
    workdir: Path
    identity: Path
    host_key: Path
    known_hosts: Path
    home: Path
    proc: subprocess.Popen
    user: str = "root"

    @property
    def spec(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    def options(self, **overrides) -> SshOptions:
        """Client options that use only this device's keys (never the tester's ~/.ssh or agent)."""
        values = dict(
            known_hosts=self.known_hosts,
            ssh_config=None,
            identities=(self.identity,),
            use_agent=False,
            connect_timeout=5.0,
            link_timeout=4.0,
        )
        values.update(overrides)
        return SshOptions(**values)

    def trust(self) -> None:
        """Record the host key the way `ssh` would after a confirmed first connection."""
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        with open(self.known_hosts, "a") as handle:
            handle.write(f"{name} {kind} {blob}\n")

    def stop(self) -> None:
        kill_tree(self.proc.pid)
        self.proc.wait(timeout=5)


def write_config(workdir: Path, address: str, port: int, chroot: Path | None,
                 environment: dict[str, str] | None = None) -> Path:
    lines = [
        f"Port {port}",
        f"ListenAddress {address}",
        f"HostKey {workdir / 'host_ed25519'}",
        "PidFile none",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "MaxStartups 64",
        "MaxSessions 64",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
    ]
    if chroot is not None:
        lines.append(f"ChrootDirectory {chroot}")
    if environment:
        lines.append("SetEnv " + " ".join(f"{key}={value}" for key, value in environment.items()))
    config = workdir / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_device(
    workdir: Path,
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    netns: str | None = None,
    rootfs: Path | None = None,
    home_size: str | None = None,
    trusted: bool = True,
    before_exec: str = "",
    environment: dict[str, str] | None = None,
) -> Device:
    """Start sshd; the home folder is `workdir/home` (or a tmpfs of `home_size`, e.g. "2m").

    `before_exec` is extra shell run inside the device's mount namespace before sshd starts
    (the arm64 device mounts /proc and /dev there). `environment`: variables every session gets
    (sshd's SetEnv), e.g. QEMU_CPU for the arm64 board's qemu-user.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    host_key = keygen(workdir / "host_ed25519", "edgeclip-testbed-host")
    identity = keygen(workdir / "user_ed25519", "edgeclip-testbed-user")
    shutil.copy(identity.with_suffix(".pub"), workdir / "authorized_keys")
    port = port or free_port()
    config = write_config(workdir, address, port, rootfs, environment)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    home_in_device = (rootfs or Path("/")) / "root"
    mount_home = (
        f'mount -t tmpfs -o size={home_size},mode=0700 edgeclip-home "$2"'
        if home_size
        else 'mount --bind "$1" "$2"'
    )
    script = "; ".join(part for part in ("set -e", mount_home, before_exec, 'exec "$3" -D -e -f "$4"') if part)
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "device",
            str(home), str(home_in_device), str(SSHD), str(config)]
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    log = open(workdir / "sshd.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    device = Device(address, port, workdir, identity, host_key, workdir / "known_hosts", home, proc)
    try:
        _wait_listening(device)
    except BaseException:
        device.stop()
        raise
    if trusted:
        device.trust()
    return device


def _wait_listening(device: Device, timeout: float = 10.0) -> None:
    """sshd prints nothing when ready; it is ready once its port accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if device.proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {device.proc.returncode}: {(device.workdir / 'sshd.log').read_text()}")
        try:
            socket.create_connection((device.address, device.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on {device.address}:{device.port} within {timeout} s")
