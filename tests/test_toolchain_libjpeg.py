"""The runtime's JPEG decoder as the tool chain finds it: the target architecture's static
libjpeg-turbo, or one error line naming the Debian package that provides it."""

from pathlib import Path

import pytest

from edgeclip.errors import ToolchainError
from edgeclip.native import toolchain


@pytest.mark.parametrize("arch, package", [("x86_64", "apt-get install libjpeg62-turbo-dev`"),
                                           ("aarch64", "dpkg --add-architecture arm64 && apt-get update && "
                                                       "apt-get install libjpeg62-turbo-dev:arm64`")])
def test_a_missing_libjpeg_names_its_package(tmp_path, arch, package):
    with pytest.raises(ToolchainError) as refusal:
        toolchain.libjpeg(arch, usr=tmp_path)
    message = str(refusal.value)
    assert "\n" not in message and f"JPEG decoder for {arch}" in message and message.endswith(package), message


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_the_installed_libjpeg_is_staged_without_host_headers(arch):
    if not Path(f"/usr/lib/{arch}-linux-gnu/libjpeg.a").is_file():
        pytest.skip(f"needs /usr/lib/{arch}-linux-gnu/libjpeg.a (apt-get install {toolchain.LIBJPEG_PACKAGES[arch]})")
    headers, archive = toolchain.libjpeg(arch)
    folder = headers[0].parent
    assert {h.parent for h in headers} == {folder} and sorted(p.name for p in folder.iterdir()) == sorted(
        ["jconfig.h", *toolchain.LIBJPEG_HEADERS])
    assert archive.read_bytes()[:8] == b"!<arch>\n"


def test_an_archive_without_its_headers_is_refused_too(tmp_path):
    (tmp_path / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib" / "x86_64-linux-gnu" / "libjpeg.a").write_bytes(b"!<arch>\n")
    with pytest.raises(ToolchainError, match=r"\(.*/include/jpeglib.h\) is missing"):
        toolchain.libjpeg("x86_64", usr=tmp_path)
