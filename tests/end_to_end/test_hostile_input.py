"""Untrusted input, as an attacker or a careless colleague would hand it over: bounded work, and one line, never a
traceback.

- the vllm client against a real server on 127.0.0.1 that misbehaves (tests/hostile_servers.py): huge bodies,
  a ping that never ends, a malformed or negative Content-Length, ``100 Continue``, chunked framing cut anywhere or
  growing without end, an answer that is not HTTP, impossible token counts;
- ``aienergyscore verify`` and ``label`` on archives built to hurt: a zip bomb, a name twice, ``..``, links,
  encryption, compression nobody reads;
- dataset files, a baseline, a DCGM URL and ``aienergyscore run`` overrides that are wrong;
- SIGTERM and Ctrl-C while the optimum worker runs: the worker's whole process group goes with pytest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends import LoadRequest, PhaseWork
from pytest_aienergyscore.backends.vllm import client as vllm_client
from pytest_aienergyscore.backends.vllm.backend import VllmBackend
from pytest_aienergyscore.backends.vllm.stream import MAX_EVENT_BYTES, RequestFailed, StreamReader, checked_result
from pytest_aienergyscore.cli.docker import ARGUMENTS_FILE, build_plan, write_benchmark
from pytest_aienergyscore.cli.main import main as cli_main
from pytest_aienergyscore.report.archive import MANIFEST, build_archive, verify_archive
from pytest_aienergyscore.report.safe_zip import Limits
from pytest_aienergyscore.rules.datasets import DatasetError, load_samples
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.hostile_servers import (
    Request,
    Writer,
    answer,
    completion_events,
    good_completion,
    head,
    hostile_server,
)

pytest.importorskip("aiohttp")

REPO = Path(__file__).resolve().parents[2]
PROMPTS = "".join(json.dumps({"text": f"Prompt number {i}."}) + "\n" for i in range(3))
BENCHMARK = """
def test_bench(energy_star):
    energy_star(task="text_generation", model="m", dataset="{dataset}", max_new_tokens={tokens})
"""


def project(bench: pytest.Pytester, dataset: str = "prompts.jsonl", tokens: Any = 4) -> pytest.Pytester:
    bench.path.joinpath("prompts.jsonl").write_text(PROMPTS)
    bench.makepyfile(test_bench=BENCHMARK.format(dataset=dataset, tokens=repr(tokens)))
    return bench


def run_vllm(bench: pytest.Pytester, url: str, *args: str) -> pytest.RunResult:
    return bench.runpytest(
        "-p", "no:cacheprovider", "--energy-warmup=0", "--backend=vllm", f"--vllm-endpoint={url}",
        "--energy-output=results", "-rfE", *args,
    )  # fmt: skip


def one_line_failure(result: pytest.RunResult) -> str:
    """The one FAILED or ERROR summary line, after checking that no traceback of ours was printed."""
    out = "\n".join(result.outlines + result.errlines)
    assert "Traceback" not in out and "INTERNALERROR" not in out and "During handling" not in out, out
    lines = [x for x in result.outlines if x.startswith(("FAILED ", "ERROR "))]
    assert len(lines) == 1, out
    return lines[0]


def record(root: Path) -> dict[str, Any]:
    [path] = list((root / "results").glob("*/*/benchmark_report.json"))
    return json.loads(path.read_text())


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["name"] == name)


@pytest.fixture
def wide(bench: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("COLUMNS", "400")  # whole summary lines
    return bench


# -- the vllm client: bodies, deadlines, framing ----------------------------------------------------------------------
async def huge_models(request: Request, writer: Writer) -> None:
    entries = [{"id": f"model-{i}", "owned_by": "vllm", "pad": "x" * 1000} for i in range(5000)]  # about 5 MB
    answer(writer, 200, json.dumps({"object": "list", "data": entries}).encode())


def test_a_models_listing_over_a_megabyte_is_refused_in_one_line(wide: pytest.Pytester) -> None:
    with hostile_server(models=huge_models) as server:
        result = run_vllm(project(wide), server.url)
    assert "GET /v1/models answered more than 1 MB; not read" in one_line_failure(result)


SENT: list[int] = []  # bytes the endless error body got out, per connection


async def endless_error_body(request: Request, writer: Writer) -> None:
    """A 500 announcing 256 MB of body: a first line that says why, then zeros for as long as the client reads."""
    writer.write(head(500, {"Content-Type": "text/plain"}, 256 << 20) + b"overloaded, try later\n")
    sent = 0
    try:
        while sent < 256 << 20:
            writer.write(b"0" * 65536)
            await writer.drain()
            sent += 65536
    finally:
        SENT.append(sent)


def test_an_error_body_is_read_no_further_than_its_first_megabyte(wide: pytest.Pytester) -> None:
    SENT.clear()
    with hostile_server(post=endless_error_body) as server:
        result = run_vllm(project(wide), server.url)
    assert "last error: HTTP 500: overloaded, try later" in one_line_failure(result)
    assert SENT and max(SENT) < 32 << 20, SENT  # the client hung up after a megabyte (and what the sockets buffer)


async def ping_forever(request: Request, writer: Writer) -> None:
    """A streamed answer that never ends: an SSE comment every 0.1 s, never a token."""
    writer.write(head(200, {"Content-Type": "text/event-stream"}))
    while True:
        writer.write(b": ping\n\n")
        await writer.drain()
        await asyncio.sleep(0.1)


async def trickle_models(request: Request, writer: Writer) -> None:
    """A models listing sent one byte every 0.1 s: each read is quick, the whole never comes."""
    body = json.dumps({"data": [{"id": "m", "owned_by": "vllm"}]}).encode() * 1000
    writer.write(head(200, {"Content-Type": "application/json"}, len(body)))
    for byte in body:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("where", ["request", "models"])
def test_a_server_that_keeps_sending_without_finishing_is_given_up_at_the_deadline(
    wide: pytest.Pytester, where: str
) -> None:
    handlers = {"post": ping_forever} if where == "request" else {"models": trickle_models}
    started = time.monotonic()
    with hostile_server(**handlers) as server:
        result = run_vllm(project(wide), server.url, "--vllm-timeout=0.3")
    line = one_line_failure(result)
    assert "no complete answer within 3 s, the deadline of a request, retries included (10 x --vllm-timeout)" in line
    assert time.monotonic() - started < 30  # 0.3 s between bytes was never exceeded: only the deadline ended it


def test_the_python_3_10_deadline_times_out_and_lets_other_cancellations_through() -> None:
    from pytest_aienergyscore.backends.vllm.client import _within_py310

    async def slow(seconds: float) -> str:
        async with _within_py310(seconds):
            await asyncio.sleep(10)
        return "finished"

    async def scenario() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await slow(0.05)
        task = asyncio.ensure_future(slow(5))
        await asyncio.sleep(0.05)
        task.cancel()  # Ctrl-C's cancellation, not the deadline: stays a cancellation
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def bad_content_length(value: str):
    async def handler(request: Request, writer: Writer) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n".encode())

    return handler


@pytest.mark.parametrize("value", ["12abc", "-5"])
def test_a_malformed_content_length_is_one_line_not_an_event_loop_error(wide: pytest.Pytester, value: str) -> None:
    with hostile_server(post=bad_content_length(value)) as server:
        result = run_vllm(project(wide), server.url)
    line = one_line_failure(result)
    assert "last error: malformed response: Invalid character in Content-Length" in line
    assert f"Content-Length: {value}" in line  # the bad value, named
    out = "\n".join(result.outlines)
    assert "different loop" not in out and "event loop" not in out and "ValueError" not in out


# -- the vllm client run directly against a hostile server: the details of one phase ----------------------------------
def run_direct(url: str, samples: int = 3, tokens: int = 4) -> PhaseWork:
    """The backend as the runner drives it (load, preprocess, one generate phase), one request at a time."""
    backend = VllmBackend()
    options = (("endpoint", url), ("concurrency", 1), ("timeout_s", 5.0))
    backend.load(LoadRequest("m", None, get_task("text_generation"), "server", False, options))
    try:
        prepared = backend.preprocess([{"text": f"Prompt number {i}."} for i in range(samples)])
        return backend.run("generate", prepared, {"max_new_tokens": tokens, "min_new_tokens": tokens}, lambda n: None)
    finally:
        backend.close()


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_client, "BACKOFF_S", 0.01)


def keep_alive_answer(request: Request, usage: dict[str, Any] | None = None, text: str = "a") -> bytes:
    body = completion_events(request, usage=usage, text=text)
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_negative_content_length_never_leaves_its_connection_to_the_next_request(quick_retries: None) -> None:
    """Every other answer on a keep-alive connection has ``Content-Length: -5`` followed by a whole second answer (one
    token). A client that put that connection back in its pool would take the smuggled answer for the next request's:
    instead every request is retried on a fresh connection and reaches the server, and no count is the smuggled one."""
    answers = iter(range(1000))

    async def handler(request: Request, writer: Writer) -> None:
        if next(answers) % 2 == 0:
            smuggled = keep_alive_answer(request, usage={"prompt_tokens": 3, "completion_tokens": 1}, text="smuggled")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n" + smuggled)
        else:
            writer.write(keep_alive_answer(request))

    with hostile_server(post=handler, keep_alive=True) as server:
        work = run_direct(server.url)
        posts = [r for r in server.seen if r.method == "POST"]
    details = work.details
    assert (details["succeeded"], details["retries"], len(posts)) == (3, 3, 6)
    assert work.tokens == 3 * 4 and details["token_count_source"] == "server usage"


def test_a_100_continue_before_the_answer_is_skipped_not_taken_for_it() -> None:
    async def handler(request: Request, writer: Writer) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await good_completion(request, writer)

    with hostile_server(post=handler) as server:
        work = run_direct(server.url)
    assert (work.details["succeeded"], work.details["retries"], work.tokens) == (3, 0, 3 * 4)


def test_a_chunked_stream_cut_anywhere_with_extensions_and_trailers_is_read_whole() -> None:
    """A chunk per event, with a chunk extension and a trailer, written 7 bytes at a time: sizes, CRLFs and events
    all split across reads."""

    async def handler(request: Request, writer: Writer) -> None:
        events = completion_events(request).split(b"\n\n")[:-1]
        body = b"".join(b"%x;ext=1\r\n%s\n\n\r\n" % (len(e) + 2, e) for e in events) + b"0\r\nX-Trailer: 1\r\n\r\n"
        writer.write(head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}))
        for i in range(0, len(body), 7):
            writer.write(body[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0.0005)

    with hostile_server(post=handler) as server:
        work = run_direct(server.url)
    assert (work.details["succeeded"], work.details["retries"], work.tokens) == (3, 0, 3 * 4)


def test_an_answer_that_is_not_http_is_one_line_naming_it(quick_retries: None) -> None:
    async def handler(request: Request, writer: Writer) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    with hostile_server(post=handler) as server:
        work = run_direct(server.url)
    [error] = work.details["errors"]
    assert error.startswith("malformed response: ") and "SSH-2.0-OpenSSH_9.6" in error  # the answer, named
    assert "\n" not in work.details["error"] and work.details["failed"] == 1


def usage_answer(usage: Any):
    async def handler(request: Request, writer: Writer) -> None:
        body = completion_events(request, usage=usage)
        writer.write(head(200, {"Content-Type": "text/event-stream"}, len(body)) + body)

    return handler


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": -1}, "the server reported completion_tokens -1: not a whole number"),
        (
            {"prompt_tokens": 3, "completion_tokens": 10**9},
            "1000000000 completion tokens for a request of at most 9",
        ),
        ({"prompt_tokens": 3, "completion_tokens": "1"}, "completion_tokens '1': not a whole number >= 0"),
        (
            {"prompt_tokens": -3, "completion_tokens": 1},
            "reported prompt_tokens -3: not a whole number >= 0",
        ),
        ({"prompt_tokens": 3, "completion_tokens": 1.5}, "completion_tokens 1.5: not a whole number >= 0"),
        ([1, 2], "the server's usage is not an object but a list"),
    ],
    ids=["negative", "above max_tokens", "a string", "negative prompt", "a fraction", "not an object"],
)
def test_impossible_token_counts_fail_the_benchmark_in_one_line(
    wide: pytest.Pytester, usage: Any, expected: str
) -> None:
    with hostile_server(post=usage_answer(usage)) as server:
        result = run_vllm(project(wide), server.url)
    assert expected in one_line_failure(result)


def test_the_usage_chunk_and_textless_chunks_are_not_counted_as_tokens(wide: pytest.Pytester) -> None:
    """A server whose usage has no completion count: tokens are counted from the stream, where the usage chunk, the
    opening role chunk and the closing finish_reason chunk carry no text and count for nothing."""

    async def handler(request: Request, writer: Writer) -> None:
        tokens = request.json()["max_tokens"]
        events = [{"choices": [{"index": 0, "text": ""}]}]  # the opening chunk, no text
        events += [{"choices": [{"index": 0, "text": "a"}], "usage": None} for _ in range(tokens)]
        events += [{"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": None}]
        events += [{"choices": [], "usage": {"prompt_tokens": 3, "total_tokens": 3 + tokens}}]
        body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
        body += b"data: [DONE]\n\n"
        writer.write(head(200, {"Content-Type": "text/event-stream"}, len(body)) + body)

    with hostile_server(post=handler) as server:
        run_vllm(project(wide), server.url).assert_outcomes(passed=1)
    decode = phase(record(wide.path), "decode")["details"]
    assert decode["completion_tokens"] == 3 * 4 and decode["token_count_source"].startswith("counted streamed chunks")


def test_a_bad_generation_override_is_one_line_naming_it(wide: pytest.Pytester) -> None:
    with hostile_server() as server:
        result = run_vllm(project(wide, tokens="many"), server.url)
    assert "generation parameter max_new_tokens='many': must be a whole number >= 1" in one_line_failure(result)


def test_one_huge_event_in_small_pieces_is_joined_once_not_once_per_piece() -> None:
    text = "x" * (3 << 20)
    stream = b'data: {"choices":[{"index":0,"text":"' + text.encode() + b'"}]}\n\n'
    reader = StreamReader()
    for i in range(0, len(stream), 1024):
        reader.feed(stream[i : i + 1024], float(i))
    assert reader.chunks == 1 and reader.first_token is not None
    assert reader.joined_bytes <= 2 * len(stream)  # was a copy of everything held so far at every piece


def test_an_event_longer_than_the_limit_is_refused() -> None:
    reader = StreamReader()
    piece = b"data: " + b"x" * (1 << 20)
    with pytest.raises(RequestFailed, match=f"an event of more than {MAX_EVENT_BYTES >> 20} MB"):
        for _ in range(MAX_EVENT_BYTES // len(piece) + 2):
            reader.feed(piece, 1.0)


def test_an_event_split_between_cr_and_lf_is_still_one_event() -> None:
    reader = StreamReader()
    for piece in (b'data: {"choices":[{"text":"a"}]}\r', b"\n\r", b'\ndata: {"choices":[{"text":"b"}]}\r\n\r\n'):
        reader.feed(piece, 1.0)
    assert reader.chunks == 2


async def one_huge_chunk(request: Request, writer: Writer) -> None:
    """A streamed answer whose one event is a 3 MB chunk of chunked encoding, written a kilobyte at a time."""
    event = b'data: {"choices":[{"index":0,"text":"' + b"y" * (3 << 20) + b'"}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n'
    writer.write(head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}))
    chunk = b"%x\r\n" % len(event) + event + b"\r\n"
    for i in range(0, len(chunk), 1024):
        writer.write(chunk[i : i + 1024])
        await writer.drain()
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(usage), usage))


def test_a_huge_chunk_trickled_in_small_pieces_is_read_whole(wide: pytest.Pytester) -> None:
    with hostile_server(post=one_huge_chunk) as server:
        result = run_vllm(project(wide, tokens=1), server.url)
    result.assert_outcomes(passed=1)


def chunked_answer(body: bytes):
    async def handler(request: Request, writer: Writer) -> None:
        writer.write(head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}) + body)

    return handler


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"5" * 100_000, "last error: malformed response: Chunk size overflow: b'555"),
        (b"FFFFFFFFFF\r\n" + b"z" * 1000, "last error: broken response body: Response payload is not completed"),
        (b"0\r\n" + b"X-Trailer: y" * 10_000, "last error: malformed response: Got more than 8190 bytes when reading"),
    ],
    ids=["endless size line", "a terabyte chunk", "endless trailers"],
)
def test_chunked_framing_that_would_grow_without_end_is_refused(wide: pytest.Pytester, body: bytes, expected: str):
    with hostile_server(post=chunked_answer(body)) as server:
        result = run_vllm(project(wide), server.url)
    assert expected in one_line_failure(result)


def test_usage_checks_let_honest_counts_through() -> None:
    reader = StreamReader()
    reader.feed(b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":2,', 1.0)
    reader.feed(b'"completion_tokens":9}}\n\n', 2.0)
    result = checked_result(reader, 0.0, 3.0, 0, limit=9)
    assert (result.completion_tokens, result.prompt_tokens, result.from_usage) == (9, 2, True)


# -- archives received from others ------------------------------------------------------------------------------------
def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "a.txt").write_text("the real figure: 1.23 Wh\n")
    (folder / "GPU_ENERGY_SUMMARY.json").write_text(json.dumps({"units": "Wh", "total": 1.23}))
    return folder


def rebuilt(archive: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]], first: bool = False) -> Path:
    """The archive with extra members, after (or, ``first``, before) the original ones."""
    out = archive.with_name("hostile.zip")
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        originals = [(info, src.read(info)) for info in src.infolist()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": that is the point
            for info, data in (extra + originals) if first else (originals + extra):
                dst.writestr(info, data)
    return out


def patched(archive: Path, name: str, *, flag: int = 0, method: int | None = None) -> Path:
    """The archive with one member's general-purpose flag bits or'ed with ``flag`` and its compression method
    replaced, in its local header and its central directory entry (zipfile cannot write either)."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info, start = zf.getinfo(name), zf.start_dir
    for offset, flag_at, method_at in ((info.header_offset, 6, 8), (_central_entry(data, start, name), 8, 10)):
        (bits,) = struct.unpack_from("<H", data, offset + flag_at)
        struct.pack_into("<H", data, offset + flag_at, bits | flag)
        if method is not None:
            struct.pack_into("<H", data, offset + method_at, method)
    out = archive.with_name("patched.zip")
    out.write_bytes(bytes(data))
    return out


def _central_entry(data: bytearray, offset: int, name: str) -> int:
    while data[offset : offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46 : offset + 46 + name_len] == name.encode():
            return offset
        offset += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"{name} not in the central directory")


def verify_line(archive: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert cli_main(["verify", str(archive)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_first_copy_tampered_under_a_duplicate_name_is_refused(tmp_path: Path, capsys) -> None:
    archive = build_archive(run_folder(tmp_path))
    tampered = rebuilt(archive, [("run/a.txt", b"the real figure: 0.01 Wh\n")], first=True)
    with zipfile.ZipFile(tampered) as zf:
        assert zf.read("run/a.txt") == b"the real figure: 1.23 Wh\n"  # a reader takes the last copy: it matches
    assert "the name 'run/a.txt' appears more than once" in verify_line(tampered, capsys)


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("run/../../etc/cron.d/x", "member 'run/../../etc/cron.d/x' climbs out of the archive's folder with '..'"),
        ("/etc/passwd", "member '/etc/passwd' has an absolute or non-portable name"),
        ("C:/Windows/x", "member 'C:/Windows/x' has an absolute or non-portable name"),
        ("run\\..\\x", "has an absolute or non-portable name"),
        (symlink("run/link"), "member 'run/link' is a symbolic link"),
        ("run/\x1b[2Jclear", "has control characters in its name"),
    ],
    ids=["dot-dot", "absolute", "drive letter", "backslashes", "symlink", "terminal escape"],
)
def test_names_that_climb_out_links_and_escapes_are_refused_in_one_line(
    tmp_path: Path, capsys, member: Any, expected: str
) -> None:
    archive = rebuilt(build_archive(run_folder(tmp_path)), [(member, b"/etc/shadow")])
    assert expected in verify_line(archive, capsys)


@pytest.mark.parametrize(
    ("flag", "method", "expected"),
    [
        (0x1, None, "member 'run/a.txt' is encrypted; archives are checked unencrypted"),
        (0, 93, "member 'run/a.txt' uses compression method 93; readable: stored, deflated, bzip2, lzma"),
    ],
    ids=["encrypted", "zstandard"],
)
def test_encrypted_or_unreadable_members_are_one_line(tmp_path: Path, capsys, flag: int, method, expected) -> None:
    archive = patched(build_archive(run_folder(tmp_path)), "run/a.txt", flag=flag, method=method)
    assert expected in verify_line(archive, capsys)


def test_a_manifest_naming_a_file_twice_or_with_escapes_is_malformed(tmp_path: Path, capsys) -> None:
    folder = run_folder(tmp_path)
    archive = build_archive(folder)
    digest = hashlib.sha256((folder / "a.txt").read_bytes()).hexdigest()
    with zipfile.ZipFile(archive) as zf:
        manifest = zf.read(f"run/{MANIFEST}")
    for extra, expected in (
        (f"{digest}  run/a.txt\n", "lists 'run/a.txt' twice"),
        ("0" * 64 + "  \x1b[31m\n", "malformed"),
    ):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive) as src, zipfile.ZipFile(bad, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info) if info.filename != f"run/{MANIFEST}" else manifest + extra.encode())
        assert expected in verify_line(bad, capsys)


ZEROS = 256 << 20


@pytest.fixture(scope="module")
def zeros_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256 MB member of zeros (deflated to about 250 KB) with a manifest that matches it."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    digest = hashlib.sha256()
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("run/zeros.bin", "w", force_zip64=True) as member:
            for _ in range(ZEROS >> 20):
                member.write(block)
                digest.update(block)
        zf.writestr(f"run/{MANIFEST}", f"{digest.hexdigest()}  run/zeros.bin\n")
    return path


def test_a_zip_bomb_is_refused_before_anything_is_inflated(zeros_archive: Path, capsys) -> None:
    started = time.perf_counter()
    line = verify_line(zeros_archive, capsys)
    assert "member 'run/zeros.bin' inflates" in line and "more than the 200 allowed" in line
    assert zeros_archive.stat().st_size < 1 << 20 and time.perf_counter() - started < 5


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory read from /proc (Linux)")
def test_verify_streams_members_in_flat_memory_when_limits_allow_them(zeros_archive: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from pytest_aienergyscore.report.archive import verify_archive
        from pytest_aienergyscore.report.safe_zip import Limits
        result = verify_archive(Path(sys.argv[1]), Limits(ratio=1e6))
        # this process's peak resident memory (ru_maxrss would also count the pytest process it was forked from)
        peak_kb = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
        print(result.ok, result.checked, int(peak_kb) // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(zeros_archive)], capture_output=True, text=True, timeout=120)
    ok, checked, peak_mb = done.stdout.split()
    assert (ok, checked) == ("True", "1"), done.stderr
    assert int(peak_mb) < 150, f"peak {peak_mb} MB to verify a {ZEROS >> 20} MB member"  # read whole: > 256


def test_limits_are_the_archive_checks_own(zeros_archive: Path) -> None:
    assert verify_archive(zeros_archive, Limits(ratio=1e6, member_bytes=1 << 20)).error == (
        f"member 'run/zeros.bin' holds {ZEROS} bytes, more than the {1 << 20} allowed"
    )


def label_archive(tmp_path: Path, summary: bytes) -> Path:
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "GPU_ENERGY_SUMMARY.json").write_bytes(summary)
    return build_archive(folder)


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        (b'{"total": 1}' + b" " * (40 << 20), "member 'labelled/GPU_ENERGY_SUMMARY.json' inflates"),
        (b"[1, 2, 3]", "GPU_ENERGY_SUMMARY.json holds a list, not the JSON object a run writes"),
        (b"[" * 100_000 + b"]" * 100_000, "GPU_ENERGY_SUMMARY.json is nested too deeply"),
    ],
    ids=["bomb", "not an object", "nested"],
)
def test_label_from_a_hostile_zip_is_one_line(tmp_path: Path, capsys, summary: bytes, expected: str) -> None:
    archive = label_archive(tmp_path, summary)
    capsys.readouterr()
    assert cli_main(["label", str(archive), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "x.png").exists()


# -- dataset files -----------------------------------------------------------------------------------------------------
def write_parquet_cut(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [f"prompt {i}" for i in range(200)]}), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DATASETS = {
    "long csv field": ("prompts.csv", lambda p: p.write_text("text\n" + "y" * 200_000 + "\n"), "cannot be read as CSV"),
    "cut parquet": ("prompts.parquet", write_parquet_cut, "--energy-dataset prompts.parquet: cannot be read ("),
    "rows not objects": ("rows.jsonl", lambda p: p.write_text('["a", "b"]\n'), "row 1 is a list, not an object"),
    "text not text": (
        "num.jsonl",
        lambda p: p.write_text('{"text": 5}\n'),
        "column 'text': holds a value of type int, not text",
    ),
    "nested json": ("deep.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "JSON nested too deeply"),
    "bad json line": ("bad.jsonl", lambda p: p.write_text('{"text": "a"}\n{"text": \n'), "line 2 is not JSON"),
}


@pytest.mark.parametrize("case", sorted(DATASETS))
def test_a_bad_dataset_file_fails_the_benchmark_in_one_line(wide: pytest.Pytester, case: str) -> None:
    name, write, expected = DATASETS[case]
    write(wide.path / name)
    with hostile_server() as server:
        result = run_vllm(project(wide, dataset=name), server.url)
    assert expected in one_line_failure(result)


async def keep_alive_models(request: Request, writer: Writer) -> None:
    body = json.dumps({"object": "list", "data": [{"id": "m", "owned_by": "vllm"}]}).encode()
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def test_a_benchmark_failing_before_its_record_still_closes_the_servers_connections(wide: pytest.Pytester) -> None:
    """The backend was loaded (a keep-alive connection open) when the dataset turned out bad: the end of the session
    closes it, rather than leaving it to the garbage collector's "Unclosed client session" at exit."""
    name, write, _ = DATASETS[sorted(DATASETS)[0]]
    write(wide.path / name)
    with hostile_server(models=keep_alive_models, keep_alive=True) as server:
        run_vllm(project(wide, dataset=name), server.url).assert_outcomes(failed=1)
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.seen) == 1 and server.open_connections == 0


def test_bad_image_and_audio_values_name_the_row_and_the_file(tmp_path: Path) -> None:
    (tmp_path / "not-an-image.png").write_text("hello")
    (tmp_path / "not-audio.wav").write_bytes(b"RIFF....WAVEjunk")
    cases = {
        "image_classification": [
            ({"image": "missing.png"}, f"row 1, column 'image': cannot read an image from {tmp_path}/missing.png ("),
            ({"image": "not-an-image.png"}, "cannot read an image from"),
            ({"image": {"bytes": "not bytes", "path": None}}, "cannot read an image from a value of type NoneType"),
        ],
        "automatic_speech_recognition": [
            ({"audio": "missing.wav"}, f"row 1, column 'audio': cannot read audio from {tmp_path}/missing.wav ("),
            ({"audio": "not-audio.wav"}, "cannot read audio from"),
            ({"audio": {"array": 5}}, "cannot read audio from {'array': ...}"),
        ],
    }
    for task, rows in cases.items():
        for row, expected in rows:
            path = tmp_path / "rows.jsonl"
            path.write_text(json.dumps(row) + "\n")
            with pytest.raises(DatasetError) as caught:
                load_samples(get_task(task), str(path), 1)
            assert expected in str(caught.value) and "\n" not in str(caught.value)


# -- a baseline, a DCGM URL --------------------------------------------------------------------------------------------
GATE_BENCHMARK = """
def test_fixed(energy_meter):
    energy_meter.set(model="org/fixed", task="text_classification")
"""


def test_a_baseline_nested_thousands_deep_is_one_line(bench: pytest.Pytester) -> None:
    baseline = bench.path / "baseline.json"
    baseline.write_text('{"schema": ' + "[" * 50_000 + "]" * 50_000 + "}")
    bench.makepyfile(test_gate=GATE_BENCHMARK)
    result = bench.runpytest("-p", "no:cacheprovider", f"--energy-baseline={baseline}")
    err = "\n".join(result.errlines)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "Traceback" not in err and "INTERNALERROR" not in err
    assert f"{baseline}: corrupted, JSON nested deeper than 32 levels" in err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://[::1/metrics", "http://[::1/metrics: not a valid URL (Invalid IPv6 URL)"),
        ("http://[gpu-host]:9400/metrics", "not a valid URL ("),
        ("http://host:99999/metrics", "http://host:99999/metrics: not a valid URL (Port out of range"),
        ("http://user:hunter2@host:9x/metrics", "http://host:9x/metrics: not a valid URL ("),
    ],
    ids=["unclosed bracket", "bracketed name", "port out of range", "port not a number"],
)
def test_a_malformed_dcgm_url_is_one_line_not_an_internal_error(wide: pytest.Pytester, url: str, expected: str) -> None:
    wide.makepyfile(test_gate=GATE_BENCHMARK)
    result = wide.runpytest("-p", "no:cacheprovider", "--energy-meter=dcgm", f"--energy-dcgm-url={url}", "-rfE")
    line = one_line_failure(result)
    assert expected in line and "hunter2" not in "\n".join(result.outlines)


# -- aienergyscore run: overrides are data -----------------------------------------------------------------------------
NASTY = ["org/model\\", 'a"""b', "it's", "x\ny", "{braces}", "\\u0041"]


def test_overrides_with_backslashes_quotes_and_newlines_reach_energy_star_unchanged(tmp_path: Path) -> None:
    for value in NASTY:
        plan = build_plan("text_generation", [f"backend.model={value}", f"scenario.generate_kwargs.stop={value}"])
        folder = tmp_path / str(NASTY.index(value))
        folder.mkdir()
        test_file = write_benchmark(plan, f"backend.model={value}", folder)
        source = test_file.read_text()
        compile(source, str(test_file), "exec")
        assert value not in source  # nothing from the command line is in the code
        arguments = json.loads((folder / ARGUMENTS_FILE).read_text())
        assert arguments["energy_star"]["model"] == value and arguments["kwargs"] == {"stop": value}


def test_run_with_an_override_ending_in_a_backslash_runs_its_test(tmp_path: Path, clean_env) -> None:
    env = {**os.environ, "BENCHMARK_BACKEND": "pytorch", "AIENERGYSCORE_METER": "estimate", "HF_HUB_OFFLINE": "1"}
    missing = str(tmp_path / "no-such-model") + "\\"
    command = [sys.executable, "-m", "pytest_aienergyscore", "run", "--config-name", "text_generation"]
    done = subprocess.run(
        [*command, "scenario.num_samples=2", f"backend.model={missing}"],  # the command line ends in a backslash
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "SyntaxError" not in out and "error during collection" not in out and "Traceback" not in out, out
    assert "1 failed" in out or "1 skipped" in out, out
    assert missing.rstrip("\\") in out  # the one line names the model it could not have


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("scenario.generate_kwargs.max_new_tokens=abc", "max_new_tokens=abc: expected a whole number >= 1"),
        ("scenario.generate_kwargs.min_new_tokens=-2", "min_new_tokens=-2: expected a whole number >= 0"),
        ("scenario.generate_kwargs.do_sample=maybe", "do_sample=maybe: expected true or false"),
        ("scenario.generate_kwargs.model=x", "'model' is an argument of energy_star itself"),
    ],
)
def test_a_bad_generation_override_to_run_is_one_line(tmp_path: Path, capsys, override: str, expected: str) -> None:
    argv = ["run", "--output", str(tmp_path / "out"), "--config-name", "text_generation", "backend.model=m", override]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out").exists()


# -- SIGTERM and Ctrl-C while the optimum worker runs ------------------------------------------------------------------
FAKE_WORKER = """#!/bin/sh
# stands in for the optimum environment's python: starts a child, as optimum-benchmark's launcher does, and waits
sleep 300 &
echo $! > child.pid
echo $$ > worker.pid
wait
"""

DRIVER = """
import sys
from pathlib import Path
from pytest_aienergyscore.backends.optimum.launch import run_worker
config = {"name": "x", "backend": {"device": "cpu"}, "scenario": {}}
run_worker(Path(sys.argv[1]), config, Path(sys.argv[2]), local_dataset=False)
"""


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_pytest_stops_the_optimum_worker_and_its_children(tmp_path: Path, signum: int) -> None:
    python = tmp_path / "python"
    python.write_text(FAKE_WORKER)
    python.chmod(0o755)
    run_dir = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(python), str(run_dir)], stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not ((run_dir / "worker.pid").exists() and (run_dir / "child.pid").exists()):
            assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read() if driver.stderr else ""
            time.sleep(0.05)
        time.sleep(0.2)  # the pid files are written: let the shell reach its wait
        pids = [int((run_dir / name).read_text()) for name in ("worker.pid", "child.pid")]
        assert all(alive(pid) for pid in pids)
        driver.send_signal(signum)  # to pytest's process only, as a terminal's Ctrl-C reaches its process group
        driver.wait(timeout=30)
        assert driver.returncode != 0 and (signum != signal.SIGTERM or driver.returncode == -signal.SIGTERM)
        stop_by = time.monotonic() + 15
        while any(alive(pid) for pid in pids) and time.monotonic() < stop_by:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids), "the worker or its child outlived pytest"
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()
