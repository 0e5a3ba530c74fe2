"""A network namespace with its own address, joined to the test machine by a veth pair on a
private /30 (10.213.N.0/30, used only inside this sandbox): traffic to the device crosses a real
link that the fault tests can take down, shape or make lossy.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass

from edgeclip.testbed.procs import kill_pids

SUBNET_BASE = ipaddress.ip_network("10.213.0.0/16")


def missing_capability() -> str | None:
    if os.geteuid() != 0:
        return "root (euid 0) to create network namespaces"
    if shutil.which("ip") is None:
        return "the `ip` command (apt-get install iproute2)"
    probe = subprocess.run(["ip", "netns", "add", f"ecl-probe-{os.getpid()}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces (`ip netns add` failed: {probe.stderr.strip()})"
    subprocess.run(["ip", "netns", "del", f"ecl-probe-{os.getpid()}"], check=True)
    return None


def sh(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess:
    if netns:
        argv = ("ip", "netns", "exec", netns, *argv)
    return subprocess.run(argv, check=True, capture_output=True, text=True)


@dataclass
class Namespace:
    name: str
    host_if: str
    device_if: str
    host_address: str
    device_address: str

    def exec(self, *argv: str) -> subprocess.CompletedProcess:
        return sh(*argv, netns=self.name)

    def set_link(self, up: bool) -> None:
        self.exec("ip", "link", "set", self.device_if, "up" if up else "down")

    def destroy(self) -> None:
        """Processes inside first (by PID), then the namespace; the veth pair dies with it."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout.split()
        kill_pids([int(pid) for pid in pids])
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


def create(tag: int) -> Namespace:
    """`tag` tells parallel namespaces apart; the /30 is the first one not routed yet."""
    name = f"ecl-{os.getpid()}-{tag}"
    host_if, device_if = f"eh{os.getpid() % 100000}{tag}"[:15], f"ed{os.getpid() % 100000}{tag}"[:15]
    subnet = _free_subnet()
    host_address, device_address = (str(a) for a in list(subnet.hosts())[:2])
    namespace = Namespace(name, host_if, device_if, host_address, device_address)
    try:
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", device_if)
        sh("ip", "link", "set", device_if, "netns", name)
        sh("ip", "addr", "add", f"{host_address}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        namespace.exec("ip", "addr", "add", f"{device_address}/30", "dev", device_if)
        namespace.exec("ip", "link", "set", device_if, "up")
        namespace.exec("ip", "link", "set", "lo", "up")
    except BaseException:
        namespace.destroy()
        raise
    return namespace


def _free_subnet() -> ipaddress.IPv4Network:
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    used = {line.split()[0] for line in routes.splitlines() if line}
    start = os.getpid() % 16000
    subnets = list(SUBNET_BASE.subnets(new_prefix=30))
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if str(candidate) not in used:
            return candidate
    raise RuntimeError(f"every /30 in {SUBNET_BASE} is routed already; remove stale ecl-* namespaces")
