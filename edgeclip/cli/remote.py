"""`edgeclip deploy | profile | rollback`: argument parsing and printing only; the work is in
`edgeclip.remote` (deploy, profile, report, fleet). `--hosts FILE` runs the verb on a fleet.
paramiko is imported only when a verb runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgeclip import console
from edgeclip.errors import RemoteError
from edgeclip.remote.hostkeys import TRUST_FLAG

HOST_HELP = "[user@]address[:port] or an alias from ~/.ssh/config"


def add_remote_commands(subparsers) -> None:
    p = subparsers.add_parser("deploy", help="install a bundle on a board over SSH (atomic, keeps the previous version)")
    p.add_argument("bundle", help="the .edgeclip bundle to install")
    _add_connection_options(p)
    p.set_defaults(func=_deploy)

    p = subparsers.add_parser("profile", help="deploy, then measure the ternary and fp32 modules on the board")
    p.add_argument("bundle", help="the .edgeclip bundle to profile")
    _add_connection_options(p)
    p.add_argument("--runs", type=int, default=20, help="inferences per module (default 20)")
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON to this file")
    p.add_argument("--report", metavar="DIR", help="write report.md, profile.json and PNG plots into this folder")
    p.set_defaults(func=_profile)

    p = subparsers.add_parser("rollback", help="make the previous installed version of a bundle current again")
    p.add_argument("name", help="the bundle name, as `deploy` printed it")
    _add_connection_options(p)
    p.set_defaults(func=_rollback)


def _add_connection_options(p) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help=HOST_HELP)
    where.add_argument("--hosts", metavar="FILE", help="a file with one host per line: run on all of them")
    add_ssh_options(p)
    p.add_argument("--jobs", type=int, default=4, help="boards worked on at once with --hosts (default 4)")


def add_ssh_options(p) -> None:
    """How to reach and trust a board: the same for every verb that talks to one."""
    p.add_argument(TRUST_FLAG, action="store_true", help="accept and record an unknown host key (never a changed one)")
    p.add_argument("--identity", "-i", action="append", default=[], help="private key file to offer first; repeatable")
    p.add_argument("--ssh-config", default="~/.ssh/config", help="ssh_config to read (default ~/.ssh/config)")
    p.add_argument("--known-hosts", default="~/.ssh/known_hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    p.add_argument("--no-agent", action="store_true", help="do not offer ssh-agent keys")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a board to answer")
    p.add_argument("--link-timeout", type=float, default=8.0, help="seconds of silence before a link counts as dead")
    p.add_argument("--retries", type=int, default=3, help="reconnects after a network failure (with back-off)")


def options_from(args):
    """The SshOptions the connection options describe."""
    from edgeclip.remote.connect import SshOptions

    return SshOptions(
        known_hosts=Path(args.known_hosts).expanduser(),
        ssh_config=Path(args.ssh_config).expanduser(),
        identities=tuple(Path(p).expanduser() for p in args.identity),
        trust_new_host=args.trust_new_host,
        use_agent=not args.no_agent,
        connect_timeout=args.connect_timeout,
        link_timeout=args.link_timeout,
        attempts=max(1, args.retries + 1),
    )


def _deploy(args) -> None:
    from edgeclip.remote.deploy import deploy

    options = options_from(args)

    def job(host):
        result = deploy(args.bundle, host, options, progress=None if args.hosts else _print_progress)
        if not args.hosts:
            print(file=console.stream())
            _print_deployed(result)
        return result

    _on_each_host(args, job, lambda r: f"{r.name} {r.version} ({r.device.arch})")


def _profile(args) -> None:
    from edgeclip.remote.profile import profile
    from edgeclip.remote.report import markdown, write_json, write_report

    options = options_from(args)

    def job(host):
        result = profile(args.bundle, host, options, runs=args.runs, progress=None if args.hosts else _print_progress)
        suffix = _host_folder(str(host)) if args.hosts else ""
        if args.report:
            write_report(result, Path(args.report) / suffix)
        if args.json and not args.hosts:
            write_json(result, args.json)
        if not args.hosts:
            print(file=console.stream())
            print(markdown(result))
        if not result.passed:
            raise RemoteError(f"{host}: the output check failed (cosine below the minimum); see the report")
        return result

    outcomes = _on_each_host(args, job, lambda r: f"p50 speed-up {r.ratios.get('speedup_p50', 0):.2f}x")
    if args.json and args.hosts:
        Path(args.json).write_text(json.dumps(
            {o.host: o.result.as_dict() if o.ok else {"error": o.error} for o in outcomes}, indent=2) + "\n")


def _rollback(args) -> None:
    from edgeclip.remote.deploy import rollback

    options = options_from(args)
    _on_each_host(
        args,
        lambda host: rollback(host, args.name, options),
        lambda r: f"{r['name']}: current {r['current']}, previous {r['previous']}",
        single=lambda r: print(f"{r['host']}: {r['name']} is now {r['current']} (previous {r['previous']})"),
    )


def _on_each_host(args, job, describe, single=None):
    """One host: errors propagate to the CLI as one line. A fleet: table, then fail if any failed."""
    from edgeclip.remote.fleet import run_fleet, summary_table
    from edgeclip.remote.hosts import HostSpec, read_hosts_file

    if args.host:
        result = job(HostSpec.parse(args.host))
        if single is not None:
            single(result)
        return None
    outcomes = run_fleet(read_hosts_file(args.hosts), job, jobs=args.jobs)
    print(summary_table(outcomes, describe))
    failed = [o.host for o in outcomes if not o.ok]
    if failed:
        raise RemoteError(f"{len(failed)} of {len(outcomes)} hosts failed ({', '.join(failed)}); see the table above")
    return outcomes


def _print_progress(done: int, total: int, rate: float) -> None:
    percent = 100 * done / total if total else 100
    print(f"\rupload {done / 1e6:.1f}/{total / 1e6:.1f} MB ({percent:.0f}%) at {rate / 1e6:.2f} MB/s",
          end="", file=console.stream(), flush=True)


def _print_deployed(result) -> None:
    previous = f", previous {result.previous} kept for rollback" if result.previous else ""
    action = "installed" if result.uploaded else "already current"
    print(f"{result.host}: {result.name} {result.version} {action} in {result.install_dir}{previous}")


def _host_folder(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", host)
