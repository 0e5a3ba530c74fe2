"""Deploy a bundle: probe, refuse what cannot run there, upload (resumable) into staging, verify on
the board, unpack into `versions/<sha12>`, then switch the `current` link atomically. The previous
version stays installed and linked as `previous`, so a failed install changes nothing and
`rollback` is one rename.

The device layout is the one `edgeclip flash` installs into too, with ROOT = `~/.edgeclip` of the
login user (`ROOT/.staging/`, `ROOT/<name>/versions/<sha12>/`, `current`, `previous`); it is
documented once, in docs/bundle-format.md ("On the device"), and named in edgeclip.formats.layout.
The install script below is its POSIX shell side (the board needs no Python for SSH);
edgeclip/flash/install.py is the same rules in Python for the serial agent.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeclip.errors import RemoteError
from edgeclip.formats import cpu_features
from edgeclip.formats.bundle import read_plan, sha256_file, verify_bundle
from edgeclip.formats.layout import (
    CURRENT,
    SSH_ROOT,
    STAGING,
    VERSIONS,
    name_problem,
    partial_name,
    version_of,
)
from edgeclip.remote.connect import Connection, Session, SshOptions
from edgeclip.remote.diagnose import explain
from edgeclip.remote.hosts import HostSpec
from edgeclip.remote.probe import DeviceInfo, normalize_arch, probe
from edgeclip.remote.upload import Progress, UploadStats, upload

DISK_HEADROOM = 2.2  # the staged tar and the unpacked copy coexist until the install ends

INSTALL_SCRIPT = r"""
set -u
app=$1 part=$2 sha=$3 version=$4
fail() { code=$1; shift; printf 'edgeclip-install: %s\n' "$*" >&2; rm -f "$part.sums"; exit "$code"; }
if [ ! -e "$part" ] && [ "$(readlink "$app/current" 2>/dev/null)" = "versions/$version" ]; then
  printf 'current=%s\nprevious=%s\n' "versions/$version" "$(readlink "$app/previous" 2>/dev/null)"; exit 0
fi
cat > "$part.sums" || fail 21 "cannot write next to the staged upload"
got=$(sha256sum < "$part") || fail 22 "cannot hash the staged upload"
[ "${got%% *}" = "$sha" ] || { rm -f "$part"; fail 23 "uploaded bundle does not match its sha256 (removed; deploy again)"; }
mkdir -p "$app/versions" || fail 24 "cannot create $app/versions"
dest=$app/versions/$version
if [ -d "$dest" ] && ! (cd "$dest" && sha256sum -c --quiet --strict "$part.sums" >/dev/null 2>&1); then
  rm -rf "$dest" || fail 25 "cannot replace the damaged copy in $dest"
fi
if [ ! -d "$dest" ]; then
  tmp=$(mktemp -d "$app/versions/.incoming.XXXXXX") && chmod 755 "$tmp" || fail 26 "cannot create a folder in $app/versions"
  tar -xf "$part" -C "$tmp" || { rm -rf "$tmp"; fail 27 "unpacking the bundle failed"; }
  (cd "$tmp" && sha256sum -c --quiet --strict "$part.sums") || { rm -rf "$tmp"; fail 28 "unpacked files do not match their sha256"; }
  mv "$tmp" "$dest" || { rm -rf "$tmp"; fail 29 "cannot move the new version into place"; }
fi
old=$(readlink "$app/current" 2>/dev/null || true)
if [ "$old" != "versions/$version" ]; then
  rm -f "$app/.current.new" && ln -s "versions/$version" "$app/.current.new" && mv -T "$app/.current.new" "$app/current" \
    || fail 30 "cannot switch $app/current"
  if [ -n "$old" ]; then
    rm -f "$app/.previous.new" && ln -s "$old" "$app/.previous.new" && mv -T "$app/.previous.new" "$app/previous"
  fi
fi
keep_current=$(readlink "$app/current" 2>/dev/null || true)
keep_previous=$(readlink "$app/previous" 2>/dev/null || true)
for dir in "$app"/versions/* "$app"/versions/.incoming.*; do
  [ -e "$dir" ] || continue
  case "versions/${dir##*/}" in "$keep_current"|"$keep_previous") ;; *) rm -rf "$dir" ;; esac
done
rm -f "$part" "$part.sums"
printf 'current=%s\nprevious=%s\n' "$keep_current" "$keep_previous"
"""

INSTALLED_SCRIPT = r"""
app=$1 version=$2
current=$(readlink "$app/current" 2>/dev/null)
printf 'current=%s\nprevious=%s\n' "$current" "$(readlink "$app/previous" 2>/dev/null)"
[ "$current" = "versions/$version" ] || exit 1
(cd "$app/versions/$version" && sha256sum -c --quiet --strict - >/dev/null 2>&1) || exit 2
"""

ROLLBACK_SCRIPT = r"""
set -u
app=$1
fail() { code=$1; shift; printf 'edgeclip-rollback: %s\n' "$*" >&2; exit "$code"; }
[ -d "$app" ] || fail 40 "nothing named like that is installed"
previous=$(readlink "$app/previous") || fail 41 "there is no previous version to roll back to"
current=$(readlink "$app/current") || fail 42 "there is no current version"
[ -d "$app/$previous" ] || fail 43 "the previous version's folder is gone"
rm -f "$app/.current.new" && ln -s "$previous" "$app/.current.new" && mv -T "$app/.current.new" "$app/current" \
  || fail 44 "cannot switch the current link"
rm -f "$app/.previous.new" && ln -s "$current" "$app/.previous.new" && mv -T "$app/.previous.new" "$app/previous"
printf 'current=%s\nprevious=%s\n' "$previous" "$current"
"""


@dataclass(frozen=True)
class DeployResult:
    host: str
    name: str
    version: str
    previous: str | None
    install_dir: str
    bytes: int
    uploaded: bool
    upload_seconds: float
    bytes_per_second: float
    resumed_from: tuple[int, ...]
    reconnects: int
    device: DeviceInfo

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Absolute paths on the board (SFTP and the shell then agree whatever the login shell is)."""

    home: str
    name: str

    @property
    def base(self) -> str:
        return f"{self.home.rstrip('/')}/{SSH_ROOT}"

    @property
    def staging(self) -> str:
        return f"{self.base}/{STAGING}"

    @property
    def app(self) -> str:
        return f"{self.base}/{self.name}"

    @property
    def current(self) -> str:
        return f"{self.app}/{CURRENT}"

    def part(self, sha256: str) -> str:
        return f"{self.staging}/{partial_name(sha256)}"


def check_name(name: object, bundle) -> str:
    """A bundle name becomes one folder name on the board; anything else is refused, not rewritten."""
    if problem := name_problem(name):
        raise RemoteError(f"{bundle}: {problem}; rebuild it with another --name")
    return name


def check_fits(manifest: dict, info: DeviceInfo, bundle_bytes: int, host: str) -> None:
    """Refuse before any upload: wrong architecture, missing tools, not enough disk."""
    target = manifest.get("target") or {}
    want = normalize_arch(str(target.get("arch", "")))
    if want != info.arch:
        raise RemoteError(
            f"{host}: bundle is built for {target.get('name', '?')} ({want or 'no arch'}) but the board is {info.arch} "
            f"({info.describe()}); build the bundle for a target of that architecture"
        )
    if info.missing_tools:
        raise RemoteError(f"{host}: the board lacks {', '.join(info.missing_tools)}; install coreutils and tar there")
    need_kb = int(bundle_bytes * DISK_HEADROOM / 1024) + 1
    if info.disk_free_kb is not None and info.disk_free_kb < need_kb:
        raise RemoteError(
            f"{host}: the board's disk is full for this bundle: {info.disk_free_kb} KiB free in {info.home}, "
            f"{need_kb} KiB needed; free space there"
        )


def check_cpu(bundle, manifest: dict, info: DeviceInfo, host: str, variants=None) -> None:
    """Refuse before any upload a bundle whose code needs CPU features the board lacks (the
    runner's own check, variants.h, on the plan's variant lines): the variants named, or without
    names every variant. A board that did not report its features is not checked here; the
    runner still checks at load."""
    if info.cpu_features is None:
        return
    refused = cpu_features.plan_refusal(read_plan(bundle, manifest), info.cpu_features, variants)
    if refused:
        raise RemoteError(f"{host}: {refused}")


def checksum_list(manifest: dict) -> bytes:
    """`sha256sum -c` input for every member, verified inside the unpacked folder."""
    lines = [f"{entry['sha256']}  ./{member}\n" for member, entry in sorted(manifest["members"].items())]
    if any("\n" in member or "\\" in member for member in manifest["members"]):
        raise RemoteError("a bundle member name has a newline or backslash; rebuild the bundle")
    return "".join(lines).encode()


def deploy(bundle, host: HostSpec | str, options: SshOptions | None = None, progress: Progress | None = None,
           variants: tuple[str, ...] | None = None) -> DeployResult:
    """Install the bundle as the board's current version; `variants`: those the caller will run,
    checked against the board's CPU with the rest (default: any one of the bundle's)."""
    options = options or SshOptions()
    bundle = Path(bundle)
    manifest = verify_bundle(bundle)
    name = check_name(manifest.get("name"), bundle)
    sha = sha256_file(bundle)
    size = bundle.stat().st_size
    with Session(host, options) as session:
        info = session.retrying(probe)
        check_fits(manifest, info, size, str(session.spec))
        check_cpu(bundle, manifest, info, str(session.spec), variants)
        layout = Layout(info.home, name)
        installed = session.retrying(lambda conn: _installed_already(conn, layout, sha, manifest))
        stats = UploadStats(total=size)
        if installed is None:
            session.retrying(lambda conn: _make_dirs(conn, layout))
            stats = upload(session, bundle, layout.part(sha), progress)
            installed = session.retrying(lambda conn: _install(conn, layout, sha, manifest))
    return DeployResult(
        host=str(session.spec),
        name=name,
        version=version_of(sha),
        previous=_link_version(installed.get("previous")),
        install_dir=f"{layout.app}/{VERSIONS}/{version_of(sha)}",
        bytes=size,
        uploaded=stats.sent > 0 or stats.total == 0,
        upload_seconds=stats.seconds,
        bytes_per_second=stats.bytes_per_second,
        resumed_from=tuple(stats.resumed_from),
        reconnects=session.reconnects,
        device=info,
    )


def rollback(host: HostSpec | str, name: str, options: SshOptions | None = None) -> dict:
    """Swap `current` and `previous`; returns the versions now current and previous."""
    options = options or SshOptions()
    check_name(name, "rollback")
    with Session(host, options) as session:
        info = session.retrying(probe)
        layout = Layout(info.home, name)
        result = session.conn.run_script(ROLLBACK_SCRIPT, (layout.app,), timeout=60)
        if not result.ok:
            raise explain(result, f"rolling back {name!r}", str(session.spec))
    switched = _key_values(result.out)
    return {"host": str(session.spec), "name": name, **{k: _link_version(v) for k, v in switched.items()}}


def _make_dirs(conn: Connection, layout: Layout) -> None:
    result = conn.run_script('mkdir -p "$1" && chmod 700 "$1"', (layout.staging,), timeout=60)
    if not result.ok:
        raise explain(result, f"creating {layout.staging}", str(conn.endpoint))


@dataclass(frozen=True)
class Installed:
    """What is installed under a bundle's name on the board, seen against one bundle."""

    current: str | None  # the version `current` links to
    previous: str | None
    intact: bool  # `current` is this bundle's version and every member matches its sha256


def installed_state(conn: Connection, layout: Layout, sha: str, manifest: dict) -> Installed:
    """Whether this very bundle is the one installed: the same version current, every member intact."""
    result = conn.run_script(INSTALLED_SCRIPT, (layout.app, version_of(sha)), stdin=checksum_list(manifest), timeout=120)
    links = _key_values(result.out)
    return Installed(_link_version(links.get("current")), _link_version(links.get("previous")), result.ok)


def _installed_already(conn: Connection, layout: Layout, sha: str, manifest: dict) -> dict | None:
    """The same version is current and intact: nothing to upload (profile runs redeploy freely)."""
    state = installed_state(conn, layout, sha, manifest)
    return {"current": f"{VERSIONS}/{state.current}", "previous": state.previous} if state.intact else None


def _install(conn: Connection, layout: Layout, sha: str, manifest: dict) -> dict:
    started = time.monotonic()
    result = conn.run_script(
        INSTALL_SCRIPT, (layout.app, layout.part(sha), sha, version_of(sha)), stdin=checksum_list(manifest), timeout=600
    )
    if not result.ok:
        raise explain(result, f"installing {layout.name!r} (after {time.monotonic() - started:.0f} s)", str(conn.endpoint))
    return _key_values(result.out)


def _key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _link_version(link: str | None) -> str | None:
    return link.rsplit("/", 1)[-1] if link else None
