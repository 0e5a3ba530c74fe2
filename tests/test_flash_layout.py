"""The one device layout over serial: `current` / `previous` semantics, "already current" learned
from INFO, the old serial layout migrated, and one tree shared with SSH deploy and rollback (a
real agent process over TCP; a real sshd on 127.0.0.1 from edgeclip.testbed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import flash_rig
import pytest
from flash_rig import AGENT, assert_installed, linked_version, listening_agent, make_bundle, sha256
from testbed import bundles, fixtures

from edgeclip.flash.host import flash
from edgeclip.formats.bundle import read_manifest, verify_bundle
from edgeclip.remote.deploy import deploy, rollback

loopback = fixtures.loopback
small = flash_rig.small


def v(bundle: Path) -> str:
    return sha256(bundle)[:12]


def listed(root: Path) -> dict:
    done = subprocess.run([*AGENT, "list", "--dir", str(root)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three versions of one model (different contents, same name) and one of another."""
    folder = tmp_path_factory.mktemp("models")
    made = {f"m{i}": make_bundle(folder / f"m{i}.edgeclip", "model", "x86_64", {"weights.bin": 40_000}) for i in (1, 2, 3)}
    made["other"] = make_bundle(folder / "other.edgeclip", "other", "x86_64", {"weights.bin": 30_000})
    return made


def test_reflashing_the_current_version_sends_nothing_and_keeps_previous(tmp_path, models):
    device = tmp_path / "device"
    (m1, _), (m2, m2_files), (m3, _) = (models[k] for k in ("m1", "m2", "m3"))
    with listening_agent(device) as url:
        flash(m1, url, progress=False)
        second = flash(m2, url, progress=False)
        assert (second.installed, second.previous) == (f"model/versions/{v(m2)}", f"model/versions/{v(m1)}")
        again = flash(m2, url, progress=False)
        assert again.already_current and again.bytes_sent == 0 and again.previous == f"model/versions/{v(m1)}"
        assert linked_version(device, "model", "previous") == v(m1), "re-flashing the current version keeps previous"
        assert_installed(device, m2, m2_files, "model")
        third = flash(m3, url, progress=False)
    assert third.previous == f"model/versions/{v(m2)}"
    assert sorted(p.name for p in (device / "model" / "versions").iterdir()) == sorted([v(m2), v(m3)])
    assert listed(device) == {"model": {"current": v(m3), "previous": v(m2), "versions": sorted([v(m2), v(m3)])}}


def test_a_damaged_current_version_is_sent_again_and_repaired_keeping_previous(tmp_path, models):
    device = tmp_path / "device"
    (m1, _), (m2, m2_files) = models["m1"], models["m2"]
    with listening_agent(device) as url:
        flash(m1, url, progress=False)
        flash(m2, url, progress=False)
        weights = device / "model" / "versions" / v(m2) / "weights.bin"
        weights.write_bytes(weights.read_bytes()[:-1])  # a truncated member: not whole any more
        repaired = flash(m2, url, progress=False)
    assert not repaired.already_current and repaired.bytes_sent == m2.stat().st_size
    assert repaired.previous == f"model/versions/{v(m1)}"
    assert_installed(device, m2, m2_files, "model")


def old_agent_install(root: Path, bundle: Path) -> None:
    """What edgeclip-agent did before serial protocol 2 (edgeclip/flash/install.py then): one slot
    per folder, `versions/<name>-<sha12>` plus `current`, the version before kept, older removed."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(read_manifest(bundle).get("name", "bundle")))[:64] or "bundle"
    version = f"{name}-{v(bundle)}"
    link = root / "current"
    previous = Path(os.readlink(link)).name if link.is_symlink() else None
    target = root / "versions" / version
    verify_bundle(bundle, arch="x86_64", extract_to=target)
    target.chmod(0o755)
    (root / ".current.new").unlink(missing_ok=True)
    os.symlink(f"versions/{version}", root / ".current.new")
    os.replace(root / ".current.new", link)
    for entry in (root / "versions").iterdir():
        if entry.name not in {version, previous}:
            shutil.rmtree(entry)


def test_an_old_serial_layout_is_migrated_and_resumed(tmp_path, models):
    (m1, _), (m2, m2_files), (m3, m3_files), (other, _) = (models[k] for k in ("m1", "m2", "m3", "other"))
    root = tmp_path / "device"
    (root / ".partial").mkdir(parents=True)
    old_agent_install(root, m1)
    old_agent_install(root, m2)
    (root / "versions" / f".model-{v(m2)}.abcd1234").mkdir()  # a power cut's extraction leftover
    held = m3.read_bytes()[: m3.stat().st_size // 2]
    (root / ".partial" / f"{sha256(m3)}.part").write_bytes(held)
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted(
        [f"model-{v(m1)}", f"model-{v(m2)}", f".model-{v(m2)}.abcd1234"])

    assert listed(root) == {"model": {"current": v(m2), "previous": v(m1), "versions": sorted([v(m1), v(m2)])}}
    assert sorted(p.name for p in root.iterdir()) == [".staging", "model"]
    assert (root / ".staging" / f"{sha256(m3)}.part").read_bytes() == held
    assert listed(root) == listed(root), "migrating twice changes nothing"

    with listening_agent(root) as url:
        resumed = flash(m3, url, progress=False)
        assert resumed.resumed_from == len(held) and resumed.previous == f"model/versions/{v(m2)}"
        assert_installed(root, m3, m3_files, "model")
        back = flash(m2, url, progress=False)  # the migrated version is reused, and gets its manifest.json
        assert back.previous == f"model/versions/{v(m3)}"
        assert_installed(root, m2, m2_files, "model")
        flash(other, url, progress=False)
    assert set(listed(root)) == {"model", "other"}


def test_reinstalling_a_migrated_current_version_keeps_its_previous(tmp_path, models):
    (m1, _), (m2, m2_files) = models["m1"], models["m2"]
    root = tmp_path / "device"
    root.mkdir()
    old_agent_install(root, m1)
    old_agent_install(root, m2)
    with listening_agent(root) as url:
        first = flash(m2, url, progress=False)  # migrated versions have no manifest.json: sent once, then whole
        assert not first.already_current and first.previous == f"model/versions/{v(m1)}"
        assert_installed(root, m2, m2_files, "model")
        assert flash(m2, url, progress=False).already_current
    assert linked_version(root, "model", "previous") == v(m1)


def test_a_migration_cut_by_a_power_failure_finishes_the_same(tmp_path, models):
    (m1, _), (m2, _), (other, _) = models["m1"], models["m2"], models["other"]
    clean, cut = tmp_path / "clean", tmp_path / "cut"
    for root in (clean, cut):
        root.mkdir()
        old_agent_install(root, m1)
        old_agent_install(root, m2)
        old_agent_install(root, other)  # the old single slot: other is current, model's m2 the version before
    # Where a power cut can leave the migration: the old folder set aside, one version already moved.
    (cut / ".old-layout").mkdir()
    os.rename(cut / "versions", cut / ".old-layout" / "versions")
    os.rename(cut / "current", cut / ".old-layout" / "current")
    (cut / "model" / "versions").mkdir(parents=True)
    os.rename(cut / ".old-layout" / "versions" / f"model-{v(m2)}", cut / "model" / "versions" / v(m2))
    expected = {"model": {"current": v(m2), "previous": None, "versions": [v(m2)]},
                "other": {"current": v(other), "previous": None, "versions": [v(other)]}}
    assert listed(clean) == expected
    assert listed(cut) == expected and not (cut / ".old-layout").exists()


def test_serial_and_ssh_share_one_tree_with_the_same_semantics(tmp_path, loopback):
    """A board flashed over serial is then deployed to and rolled back over SSH, and the other way
    round, in one ROOT (`~/.edgeclip`): each sees the other's versions as its own."""
    root = loopback.home / ".edgeclip"
    b1, b2, b3 = (bundles.make_bundle(tmp_path / f"{i}.edgeclip", seed=i) for i in (1, 2, 3))
    with listening_agent(root, cwd=tmp_path) as url:
        flash(b1, url, progress=False)
        over_ssh = deploy(b2, loopback.spec, loopback.options())
        assert over_ssh.uploaded and over_ssh.previous == v(b1)
        again = flash(b2, url, progress=False)
        assert again.already_current and again.previous == f"tiny-clip/versions/{v(b1)}"
        third = flash(b3, url, progress=False)
        assert third.previous == f"tiny-clip/versions/{v(b2)}"
        assert sorted(p.name for p in (root / "tiny-clip" / "versions").iterdir()) == sorted([v(b2), v(b3)])
        assert not deploy(b3, loopback.spec, loopback.options()).uploaded, "SSH sees the serial install as current"
        assert rollback(loopback.spec, "tiny-clip", loopback.options())["current"] == v(b2)
        back = flash(b3, url, progress=False)  # like deploy: only the current version counts as installed
        assert not back.already_current and back.previous == f"tiny-clip/versions/{v(b2)}"
        assert linked_version(root, "tiny-clip") == v(b3)
    serial_made, ssh_made = root / "tiny-clip" / "versions" / v(b3), root / "tiny-clip" / "versions" / v(b2)
    members = {"manifest.json", *read_manifest(b3)["members"]}
    for folder in (serial_made, ssh_made):
        assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == members
        assert oct(folder.stat().st_mode & 0o777) == "0o755"
    assert sorted(p.name for p in root.iterdir()) == [".staging", "tiny-clip"]
    assert listed(root) == {"tiny-clip": {"current": v(b3), "previous": v(b2), "versions": sorted([v(b2), v(b3)])}}
