"""`edgeclip-runner serve` on real bundles of the tiny CLIP: one loaded model answers JSON-lines
requests through libedgeclip's edgeclip_handle_request on stdin/stdout and on a Unix socket; bad
requests (malformed, unknown op, missing or wrong fields, unreadable or non-image files, over-long
lines) get one error object each and the process keeps serving; good answers equal the one-shot
classify/embed/tokenize modes; the socket is 0600, refuses other files, and goes on SIGTERM; the
rpi4 bundle serves under qemu-aarch64; and the C call itself keeps its return codes and labels."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from c_programs import link_against_bundle
from PIL import Image

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.native import toolchain

LABELS = ["cat", "dog", "rocket ship"]
PROMPT = "a photo of a {}"
LIMIT = 1 << 20  # EDGECLIP_MAX_REQUEST_BYTES


@pytest.fixture(scope="module")
def folder(tiny_clip_ternary, tmp_path_factory):
    """An extracted x86-64 bundle of the tiny CLIP, both towers, no baked labels."""
    root = tmp_path_factory.mktemp("serve")
    bundle = build_bundle(tiny_clip_ternary, "x86-64-v3", root / "bundles")
    with local.extracted(bundle) as (extracted, _):
        shutil.copytree(extracted, root / "bundle", symlinks=True)
    return root / "bundle"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(a PNG, a JPEG, a text file named .png)."""
    root = tmp_path_factory.mktemp("serve-files")
    rng = np.random.default_rng(5)
    png, jpg, fake = root / "photo.png", root / "photo.jpg", root / "fake.png"
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(png)
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(jpg)
    fake.write_text("not an image\n")
    return png, jpg, fake


def one_shot(command: list[str], *args) -> list[dict]:
    done = subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def runner(folder: Path) -> list[str]:
    return [str(folder / "bin" / "edgeclip-runner")]


def good_requests(png: Path, jpg: Path) -> list[dict]:
    return [
        {"id": "c1", "op": "classify", "image": str(png), "labels": LABELS, "prompt": PROMPT, "top": 2},
        {"id": {"n": [1, 2.5]}, "op": "embed", "image": str(jpg)},
        {"id": 3, "op": "embed", "text": "a photo of a cat"},
        {"id": 4, "op": "tokenize", "text": "two dogs"},
    ]


def check_good_answers(replies: list[dict], command: list[str], png: Path, jpg: Path) -> None:
    """The replies to good_requests, in order, equal the one-shot modes' lines."""
    classify, image, text, tokens = replies
    assert classify["id"] == "c1" and image["id"] == {"n": [1, 2.5]} and text["id"] == 3 and tokens["id"] == 4
    (expected,) = one_shot(command, "classify", "--image", png, "--labels", ",".join(LABELS), "--prompt", PROMPT,
                           "--top", 2)
    assert classify["result"]["image"] == expected["image"]
    assert [e["label"] for e in classify["result"]["top"]] == [e["label"] for e in expected["top"]]
    np.testing.assert_allclose([e["p"] for e in classify["result"]["top"]], [e["p"] for e in expected["top"]],
                               atol=1e-6)
    for reply, args in ((image, ("--image", jpg)), (text, ("--text", "a photo of a cat"))):
        (row,) = one_shot(command, "embed", *args)
        assert reply["result"].keys() == row.keys() and reply["result"][args[0][2:]] == row[args[0][2:]]
        np.testing.assert_allclose(reply["result"]["embedding"], row["embedding"], atol=1e-6)
    assert tokens["result"] == one_shot(command, "tokenize", "--text", "two dogs")[0]


def test_stdin_session_answers_bad_requests_with_errors_and_keeps_serving(folder, files):
    png, jpg, fake = files
    bad = [
        ('{"id": 1, "op": "classify", "image": ', None, "bad JSON at byte"),
        ("[1, 2]", None, "a request must be a JSON object"),
        ('{"id": 2, "op": "zoom", "text": "x"}', 2, "unknown op 'zoom'"),
        ('{"id": 3, "text": "x"}', 3, 'has no "op"'),
        ('{"id": 4, "op": "classify", "labels": ["a"]}', 4, 'classify needs "image"'),
        (json.dumps({"id": 5, "op": "classify", "image": str(png) + ".missing", "labels": ["a"]}), 5,
         "cannot open the image"),
        (json.dumps({"id": 6, "op": "embed", "image": str(fake)}), 6, "is not a JPEG or PNG image"),
        (json.dumps({"id": 7, "op": "classify", "image": str(png), "top": "3"}), 7, '"top" must be a whole number'),
        (json.dumps({"id": 8, "op": "embed", "image": str(png), "text": "x"}), 8, "not both"),
        (json.dumps({"id": 9, "op": "tokenize", "text": "x", "lables": []}), 9, 'unknown field "lables"'),
        (json.dumps({"id": 10, "op": "tokenize", "text": "a\u0000b"}), 10, "holds a NUL character"),
        (json.dumps({"id": 11, "op": "classify", "image": str(png), "labels": LABELS, "prompt": "no slot"}), 11,
         "must contain {} exactly once"),
        ('{"id": 12, "op": "tokenize", "text": "' + "x" * LIMIT + '"}', None, "over the limit of 1048576 bytes"),
        ('{"id": 13, "op": "tokenize", "text": "a"}\0{"id": 14}', None, "holds a NUL byte"),
    ]
    good = good_requests(png, jpg)
    # After a request with its own labels, one without them finds the model's (here: none) again.
    after = {"id": "after", "op": "classify", "image": str(png)}
    lines = [line for line, _, _ in bad] + ["", "   "] + [json.dumps(r) for r in good] + [json.dumps(after)]
    started = time.monotonic()
    done = subprocess.run([*runner(folder), "serve", "--threads", "1"], input="\n".join(lines).encode(),
                          capture_output=True, timeout=300)
    assert done.returncode == 0 and not done.stderr, done.stderr
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(replies) == len(bad) + len(good) + 1  # blank lines get no reply; the last needs no newline
    for (line, rid, message), reply in zip(bad, replies, strict=False):
        assert reply.keys() == {"id", "error"} and reply["id"] == rid, reply
        assert message in reply["error"] and "\n" not in reply["error"], (line[:60], reply)
    check_good_answers(replies[len(bad):-1], runner(folder), png, jpg)
    assert replies[-1] == {"id": "after", "error": 'this bundle has no baked labels; give "labels" in the request '
                                                   "or rebuild with edgeclip build --labels"}
    assert time.monotonic() - started < 120


def _start_socket_server(folder: Path, path: Path) -> subprocess.Popen:
    server = subprocess.Popen([*runner(folder), "serve", "--threads", "1", "--socket", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([server.stderr], [], [], 120)
    assert ready, "the server did not say it was listening"
    assert server.stderr.readline().strip() == f"edgeclip-runner serve: listening on {path}"
    return server


def _client(path: Path, requests: list[dict]) -> list[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(120)
        client.connect(str(path))
        client.sendall("".join(json.dumps(r) + "\n" for r in requests).encode())
        client.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := client.recv(1 << 16):
            data += chunk
    return [json.loads(line) for line in data.decode().splitlines()]


def test_socket_serves_clients_one_after_another_is_0600_and_goes_on_sigterm(folder, files, tmp_path):
    png, jpg, fake = files
    path = tmp_path / "edgeclip.sock"
    server = _start_socket_server(folder, path)
    try:
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        good = good_requests(png, jpg)
        first = _client(path, good[:2] + [{"id": "x", "op": "embed", "image": str(fake)}])
        second = _client(path, good[2:])
        assert "is not a JPEG or PNG image" in first[2]["error"]
        check_good_answers(first[:2] + second, runner(folder), png, jpg)
        # A second server on a live socket is refused rather than stealing it.
        refused = subprocess.run([*runner(folder), "serve", "--socket", str(path)], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 3 and f"a server is already listening on {path}" in refused.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert not os.path.lexists(path)
    finally:
        server.kill()
        server.wait()


def test_socket_refuses_an_existing_file_and_replaces_a_stale_socket(folder, tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n")
    done = subprocess.run([*runner(folder), "serve", "--socket", str(taken)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3 and done.stderr.strip() == (
        f"edgeclip-runner serve: {taken} exists and is not a socket; remove it or choose another --socket path")
    assert taken.read_text() == "keep me\n"
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(stale))  # bound, never listening, closed: what a killed server leaves
    server = _start_socket_server(folder, stale)
    try:
        assert _client(stale, [{"id": 1, "op": "tokenize", "text": "a"}])[0]["id"] == 1
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0 and not os.path.lexists(stale)
    finally:
        server.kill()
        server.wait()


def test_serve_under_qemu_answers_50_requests_from_one_process(tiny_clip_rpi4_bundle, files, tmp_path):
    png, jpg, fake = files
    prefix = toolchain.emulator_command("aarch64")
    with local.extracted(tiny_clip_rpi4_bundle) as (extracted, _):
        shutil.copytree(extracted, tmp_path / "bundle", symlinks=True)
    command = [*prefix, *runner(tmp_path / "bundle")]
    good = good_requests(png, jpg)
    texts = [{"id": 100 + i, "op": "tokenize" if i % 2 else "embed", "text": f"photo number {i}"} for i in range(44)]
    lines = [json.dumps(r) for r in good[:2]] + ["{oops", json.dumps({"id": "f", "op": "embed", "image": str(fake)})]
    lines += [json.dumps(r) for r in texts + good[2:]]
    done = subprocess.run([*command, "serve"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == 50
    assert "bad JSON" in replies[2]["error"] and "is not a JPEG or PNG image" in replies[3]["error"]
    assert [r["id"] for r in replies[4:48]] == [r["id"] for r in texts] and all("result" in r for r in replies[4:48])
    check_good_answers(replies[:2] + replies[48:], command, png, jpg)


# The protocol through the C call itself: return codes, the error in edgeclip_last_error, a NULL
# reply pointer, and request labels that leave labels set with edgeclip_set_labels in place.
REQUEST_C = r"""
#include <stdio.h>
#include "edgeclip.h"
static void ask(edgeclip_model* m, const char* line) {
  char* reply = NULL;
  int status = edgeclip_handle_request(m, line, &reply);
  printf("%d %s\n", status, reply);
  if (status == 1) fprintf(stderr, "%s\n", edgeclip_last_error());
  edgeclip_free_string(reply);
}
int main(int argc, char** argv) {
  (void)argc;
  edgeclip_model* m = edgeclip_open(argv[1], NULL, EDGECLIP_IMAGE | EDGECLIP_TEXT, 1);
  const char* labels[] = {"cat", "dog"};
  if (!m || edgeclip_set_labels(m, labels, 2, "a photo of a {}") != 0) return 1;
  ask(m, argv[2]);
  ask(m, argv[3]);
  ask(m, argv[2]);
  ask(m, "{\"id\": [true, null], \"op\": \"tokenize\"}");
  int status = edgeclip_handle_request(m, "{}", NULL);
  printf("%d %s\n", status, edgeclip_last_error());
  edgeclip_close(m);
  return 0;
}
"""


def test_handle_request_c_call(folder, files, tmp_path):
    png, _, _ = files
    source = tmp_path / "request.c"
    source.write_text(REQUEST_C)
    binary = link_against_bundle("gcc", source, folder, "request")
    own = json.dumps({"id": 1, "op": "classify", "image": str(png), "labels": LABELS, "prompt": PROMPT})
    plain = json.dumps({"id": 2, "op": "classify", "image": str(png)})
    done = subprocess.run([str(binary), str(folder), plain, own], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" ", 1) for line in done.stdout.splitlines()]
    assert [status for status, _ in rows] == ["0", "0", "0", "1", "-1"]
    first, with_labels, again, error = (json.loads(text) for _, text in rows[:4])
    assert sorted(e["label"] for e in first["result"]["top"]) == ["cat", "dog"]
    assert sorted(e["label"] for e in with_labels["result"]["top"]) == sorted(LABELS)
    assert again == first  # the request's labels did not replace the ones set through the C API
    assert error == {"id": [True, None], "error": 'tokenize needs "text"'}
    assert done.stderr.splitlines() == ['tokenize needs "text"']
    assert rows[4][1] == "edgeclip_handle_request needs somewhere to put the reply; reply is NULL"
