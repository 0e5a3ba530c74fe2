"""Remote layer pieces that need no device: host specs, ssh_config resolution, probe parsing, fit
checks, runner output, power, ratios, reports and the CLI wiring."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from edgeclip.cli.remote import add_remote_commands, options_from
from edgeclip.errors import RemoteError
from edgeclip.remote.deploy import Layout, check_fits, check_name, checksum_list
from edgeclip.remote.fleet import run_fleet, summary_table
from edgeclip.remote.hosts import HostSpec, load_ssh_config, read_hosts_file, resolve
from edgeclip.remote.probe import DeviceInfo, normalize_arch, parse_probe
from edgeclip.remote.profile import ModuleProfile, ProfileResult, mean_power_w, parse_runner_output, ratios


@pytest.mark.parametrize(
    "text, expected",
    [
        ("pi4", HostSpec("pi4")),
        ("pi@10.0.0.7", HostSpec("10.0.0.7", "pi")),
        ("pi@10.0.0.7:2222", HostSpec("10.0.0.7", "pi", 2222)),
        ("root@[fe80::1]:22", HostSpec("fe80::1", "root", 22)),
        ("board.local:2200", HostSpec("board.local", None, 2200)),
    ],
)
def test_host_spec_parses_user_address_port(text, expected):
    assert HostSpec.parse(text) == expected
    assert HostSpec.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "a b", "host:99999", "user@", "@host", "host;rm -rf ~"])
def test_host_spec_refuses_malformed(text):
    with pytest.raises(RemoteError):
        HostSpec.parse(text)


def test_ssh_config_alias_user_port_identity_and_jump(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host pi4\n  HostName 10.1.2.3\n  User pi\n  Port 2222\n  IdentityFile ~/keys/pi\n  ProxyJump gw@bastion:22\n"
        "Host *\n  IdentitiesOnly yes\n"
    )
    endpoint = resolve(HostSpec.parse("pi4"), load_ssh_config(config))
    assert (endpoint.hostname, endpoint.port, endpoint.user) == ("10.1.2.3", 2222, "pi")
    assert endpoint.identity_files[0].name == "pi" and "~" not in str(endpoint.identity_files[0])
    assert endpoint.identities_only
    assert endpoint.proxy_jump == (HostSpec("bastion", "gw", 22),)
    assert endpoint.known_hosts_name == "[10.1.2.3]:2222"
    typed = resolve(HostSpec.parse("root@pi4:22"), load_ssh_config(config))
    assert (typed.user, typed.port, typed.known_hosts_name) == ("root", 22, "10.1.2.3")


def test_hosts_file_skips_comments(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# boards\npi@a:2222\n\nb  # kitchen\n")
    assert read_hosts_file(hosts) == [HostSpec("a", "pi", 2222), HostSpec("b")]
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(RemoteError, match="lists no hosts"):
        read_hosts_file(tmp_path / "empty")


PROBE_OUTPUT = """arch=aarch64
kernel=Linux 6.6.31+rpt-rpi-v8
os=Debian GNU/Linux 12 (bookworm)
cores=4
mem_total_kb=3881000
mem_available_kb=3500000
board=Raspberry Pi 4 Model B Rev 1.5
cpu_model=
cpu_part=0xd08
home=/home/pi
disk_free_kb=1000
governor=ondemand
temperature_mc=48686
missing_tools=
power_sensors=/sys/class/hwmon/hwmon2/power1_input
"""


def test_probe_output_parsed():
    info = parse_probe(PROBE_OUTPUT)
    assert info.arch == "aarch64" and info.cores == 4 and info.board.startswith("Raspberry Pi 4")
    assert info.temperature_c == pytest.approx(48.686) and info.governor == "ondemand"
    assert info.cpu_model is None and info.power_sensors == ("/sys/class/hwmon/hwmon2/power1_input",)
    assert "Raspberry Pi 4" in info.describe()
    with pytest.raises(RemoteError, match="POSIX shell"):
        parse_probe("fish: Unknown command")


def test_arch_aliases():
    assert normalize_arch("arm64") == normalize_arch("aarch64") == "aarch64"
    assert normalize_arch("amd64") == "x86_64" and normalize_arch("armv7l") == "armv7l"


def test_fit_refuses_wrong_arch_missing_tools_and_small_disk():
    info = parse_probe(PROBE_OUTPUT)
    with pytest.raises(RemoteError, match="built for x86-64"):
        check_fits({"target": {"name": "x86-64", "arch": "x86_64"}}, info, 10, "h")
    with pytest.raises(RemoteError, match="disk is full.*1000 KiB free"):
        check_fits({"target": {"name": "rpi4", "arch": "aarch64"}}, info, 10 << 20, "h")
    check_fits({"target": {"name": "rpi4", "arch": "arm64"}}, info, 100 << 10, "h")
    lacking = DeviceInfo(arch="aarch64", kernel="", os="", home="/", missing_tools=("sha256sum",))
    with pytest.raises(RemoteError, match="lacks sha256sum"):
        check_fits({"target": {"arch": "aarch64"}}, lacking, 1, "h")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\ny", None])
def test_bundle_names_that_cannot_be_a_folder_are_refused(name):
    with pytest.raises(RemoteError):
        check_name(name, "b.edgeclip")


def test_hostile_but_valid_names_are_kept_verbatim():
    for name in ("; rm -rf ~", "$(touch pwned)", "a b", "it's \"q\"", "-rf"):
        assert check_name(name, "b") == name
        assert Layout("/home/pi", name).app == f"/home/pi/.edgeclip/{name}"


def test_checksum_list_is_sha256sum_format():
    text = checksum_list({"members": {"b/x": {"sha256": "ab" * 32}, "a": {"sha256": "cd" * 32}}}).decode()
    assert text == f"{'cd' * 32}  ./a\n{'ab' * 32}  ./b/x\n"


def runner_json(module, p50, rss, cosine=1.0):
    return json.dumps({"module": module, "load_ms": 5.0, "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2},
                       "peak_rss_kb": rss, "cosine_to_reference": cosine})


def test_runner_output_takes_last_contract_json_line():
    text = "loading...\n{\"not\": \"it\"}\n" + runner_json("ternary", 2.0, 100) + "\n"
    assert parse_runner_output(text, "ternary", "h")["latency_ms"]["p50"] == 2.0
    with pytest.raises(RemoteError, match="not the expected JSON"):
        parse_runner_output('{"module": "ternary"}', "ternary", "h")


def test_power_uses_first_sensor_with_its_unit():
    hwmon = "edgeclip-power /sys/class/hwmon/hwmon0/power1_input 2000000\n" * 2
    assert mean_power_w(hwmon + "edgeclip-power /sys/x/power2_input 9\n") == pytest.approx(2.0)
    jetson = "edgeclip-power /sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0/in_power0_input 4500\n"
    assert mean_power_w(jetson) == pytest.approx(4.5)
    assert mean_power_w("runner chatter\n") is None


def module(name, p50, rss, cosine=1.0, minimum=0.9, power=None):
    return ModuleProfile(name, 10.0, {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2}, rss, cosine, minimum,
                         power, None if power is None else power * p50)


def test_ratios_are_fp32_over_ternary():
    found = ratios({"ternary": module("ternary", 2.0, 1000), "fp32": module("fp32", 5.0, 4000)})
    assert found["speedup_p50"] == pytest.approx(2.5) and found["memory_ratio"] == pytest.approx(4.0)
    assert ratios({"ternary": module("ternary", 2.0, 1000)}) == {}


def test_report_markdown_json_and_plots(tmp_path):
    from edgeclip.remote.deploy import DeployResult
    from edgeclip.remote.report import markdown, write_report

    info = parse_probe(PROBE_OUTPUT)
    modules = {"ternary": module("ternary", 2.0, 1000, power=3.0), "fp32": module("fp32", 5.0, 4000, cosine=0.5, minimum=0.999)}
    deployed = DeployResult("pi@a", "tiny", "abc", None, "/x", 10, True, 1.0, 10.0, (), 0, info)
    result = ProfileResult("pi@a", info, {"name": "tiny", "target": {"name": "rpi4", "arch": "aarch64"},
                                          "version": "abc", "bytes": 10, "model_bytes": 9}, 5, modules, deployed,
                           ratios(modules))
    text = markdown(result)
    assert "| latency p50 (ms) | 2.000 | 5.000 |" in text and "| speedup p50 | 2.50× |" in text
    assert "| output check | pass | FAIL |" in text and "Output check: FAILED" in text
    assert "| energy / inference (mJ) | 6.00 | n/a |" in text
    files = write_report(result, tmp_path / "report")
    assert json.loads(files["json"].read_text())["ratios"]["memory_ratio"] == pytest.approx(4.0)
    for png in (files["latency"], files["memory"]):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fleet_keeps_going_when_one_host_fails():
    def job(host):
        if host.host == "bad":
            raise RemoteError("connection refused by bad:22")
        return host.host.upper()

    outcomes = run_fleet([HostSpec("a"), HostSpec("bad"), HostSpec("c")], job, jobs=2)
    assert [o.ok for o in outcomes] == [True, False, True] and outcomes[2].result == "C"
    table = summary_table(outcomes)
    assert "FAILED" in table and "connection refused" in table and "2 of 3 hosts succeeded" in table


def test_fleet_does_not_hide_bugs():
    with pytest.raises(ZeroDivisionError):
        run_fleet([HostSpec("a")], lambda host: 1 / 0)


def test_cli_verbs_and_flags():
    parser = argparse.ArgumentParser()
    add_remote_commands(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["profile", "b.edgeclip", "--host", "pi@x:2", "--runs", "7", "--json", "o.json",
                              "--report", "r", "--trust-new-host", "-i", "k1", "-i", "k2", "--retries", "0"])
    assert callable(args.func) and args.runs == 7 and args.report == "r"
    options = options_from(args)
    assert options.trust_new_host and [p.name for p in options.identities] == ["k1", "k2"] and options.attempts == 1
    assert parser.parse_args(["rollback", "tiny", "--hosts", "f"]).hosts == "f"
    with pytest.raises(SystemExit):
        parser.parse_args(["deploy", "b", "--host", "a", "--hosts", "f"])


def test_remote_layer_does_not_import_torch_or_tvm():
    import subprocess

    code = ("import sys, edgeclip.cli.remote, edgeclip.remote.profile, edgeclip.remote.report, "
            "edgeclip.remote.fleet; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tvm')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_profile_refuses_a_variant_the_bundle_lacks_before_connecting(tmp_path):
    """A bundle built without --baseline has no fp32 module: asking for it names the fix, and no
    connection is tried (the host below does not exist)."""
    from edgeclip.formats.bundle import write_bundle
    from edgeclip.remote.profile import profile

    manifest = {"name": "m", "target": {"name": "rpi4", "arch": "aarch64", "cpu_features": ["asimd"]}, "runner": "bin/run",
                "variants": [{"name": "ternary", "precision": "ternary", "kernel_family": "arm_neon", "device": "cpu",
                              "cpu_features": ["asimd"], "towers": {"image": {"path": "modules/ternary/image.so"}}}]}
    files = {"bin/run": b"#!/bin/sh\n", "modules/ternary/image.so": b"\0"}
    bundle = write_bundle(tmp_path / "m-rpi4.edgeclip", manifest, files, executables=frozenset({"bin/run"}))
    with pytest.raises(RemoteError, match="--baseline fp32"):
        profile(bundle, "nobody@192.0.2.1", modules=("ternary", "fp32"))
