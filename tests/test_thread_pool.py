"""Thread counts: physical cores from sysfs, and TVM's pool sized to them unless the user chose.

TVM's own default halves the CPUs on x86; on a VM whose vCPUs are whole cores (CI's and this
project's 2-core hosts) that is 1 thread where 2 were built for, which these tests catch.
"""

import os
import subprocess
import sys

import pytest

from edgeclip.hostinfo import physical_cores
from edgeclip.lower.thread_pool import THREAD_ENV


def _fake_sysfs(root, siblings: dict[int, str]):
    for cpu, listed in siblings.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(listed + "\n")
    return root


def test_physical_cores_counts_smt_siblings_once(tmp_path):
    allowed = sorted(os.sched_getaffinity(0))
    whole = _fake_sysfs(tmp_path / "vm", {cpu: str(cpu) for cpu in allowed})
    assert physical_cores(whole) == len(allowed)
    shared = _fake_sysfs(tmp_path / "smt", {cpu: ",".join(map(str, allowed)) for cpu in allowed})
    assert physical_cores(shared) == 1
    assert physical_cores(tmp_path / "missing") == len(allowed)  # no topology: every CPU its own core


def _pool_threads(env_overrides: dict[str, str]) -> int:
    """The size of TVM's pool in a fresh process that resolved a target first, as compile does."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV} | env_overrides
    code = ("import tvm\nimport tvm_ffi\nfrom edgeclip.lower.target import resolve_target\nresolve_target('x86-64')\n"
            "print(tvm_ffi.get_global_func('runtime.NumThreads')())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_tvm_pool_gets_every_physical_core():
    assert _pool_threads({}) == physical_cores()


@pytest.mark.parametrize("name", THREAD_ENV)
def test_a_thread_count_the_user_set_is_kept(name):
    assert _pool_threads({name: "1"}) == 1
