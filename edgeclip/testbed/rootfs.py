"""An arm64 Debian userland for the emulated board, from real Debian arm64 packages unpacked with
`dpkg-deb -x` (no debootstrap, no maintainer scripts), cached under ~/.cache/edgeclip/testbed so
only the first run downloads. Programs in it run through qemu-aarch64-static registered in
binfmt_misc with the F flag, which lets the kernel start them inside sshd's chroot.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "dash", "bash", "libtinfo6", "coreutils", "libacl1", "libattr1",
    "libselinux1", "libpcre2-8-0", "libgmp10", "tar", "gzip", "grep", "sed",
)
QEMU = Path("/usr/bin/qemu-aarch64-static")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_NAME = "edgeclip-qemu-aarch64"
# ELF64, little-endian, version 1, e_type EXEC or DYN (mask 0xfe), e_machine 0xb7 (AArch64).
ELF_AARCH64_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
ELF_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
BOARD_MODEL = "edgeclip test bed (Debian arm64 under qemu-aarch64)"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECLIP_TESTBED_CACHE", Path.home() / ".cache" / "edgeclip" / "testbed"))


def missing_capability() -> str | None:
    """None when an arm64 device can be built and run here, else the exact thing that is missing."""
    if os.geteuid() != 0:
        return "root (euid 0) for chroot, mknod and binfmt_misc"
    if not QEMU.exists():
        return f"{QEMU} (apt-get install qemu-user-static)"
    for tool in ("dpkg", "dpkg-deb", "apt-get"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command (a Debian host)"
    return None


def ensure_binfmt() -> None:
    """Make the kernel run aarch64 ELF files with the static qemu, opened once (F flag) so it
    works inside a chroot that does not contain qemu."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    for entry in BINFMT.iterdir():
        if entry.name in ("register", "status"):
            continue
        text = entry.read_text()
        if "enabled" in text and "b7" in text and "flags: F" in text and "static" in text:
            return
    line = f":{BINFMT_NAME}:M::{ELF_AARCH64_MAGIC}:{ELF_AARCH64_MASK}:{QEMU}:F"
    (BINFMT / "register").write_text(line)


def ensure_rootfs() -> Path:
    """The cached arm64 rootfs, built on first use (downloads about 10 MB of .debs)."""
    key = hashlib.sha256(" ".join(PACKAGES).encode() + BOARD_MODEL.encode()).hexdigest()[:12]
    root = cache_dir() / f"rootfs-arm64-{key}"
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    debs = _download(cache_dir() / "debs-arm64")
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=".rootfs-"))
    try:
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        _finish(staging)
        os.chmod(staging, 0o755)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _download(folder: Path) -> list[Path]:
    if "arm64" not in subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout:
        subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}:arm64" for name in PACKAGES]
    result = subprocess.run(["apt-get", "download", "-qq", *wanted], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "download", "-qq", *wanted], cwd=folder, check=True)
    debs = []
    for name in PACKAGES:
        matches = sorted(folder.glob(f"{name}_*_arm64.deb"))
        if not matches:
            raise RuntimeError(f"apt-get download did not produce {name}:arm64 in {folder}")
        debs.append(matches[-1])
    return debs


def _finish(root: Path) -> None:
    """What maintainer scripts and a booted system would provide: /bin/sh, users, os-release,
    device nodes, mount points and a device-tree model for the probe."""
    for folder, mode in (("root", 0o700), ("tmp", 0o1777), ("proc", 0o555), ("dev", 0o755), ("etc", 0o755)):
        (root / folder).mkdir(exist_ok=True)
        os.chmod(root / folder, mode)
    if not (root / "bin" / "sh").exists():
        (root / "bin" / "sh").symlink_to("dash")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
    )
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        os.mknod(root / "dev" / name, 0o666 | 0o020000, os.makedev(1, minor))
        os.chmod(root / "dev" / name, 0o666)
    model = root / "sys" / "firmware" / "devicetree" / "base" / "model"
    model.parent.mkdir(parents=True)
    model.write_bytes(BOARD_MODEL.encode() + b"\0")
    (root / ".complete").write_text("\n".join(PACKAGES) + "\n")


def arm64_mounts(root: Path) -> str:
    """Shell run inside the device's mount namespace: /proc for the board's own process info."""
    return f"mount -t proc proc {shlex.quote(str(root / 'proc'))}"
