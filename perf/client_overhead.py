"""Is the vllm backend's client ever the bottleneck? Its own CPU time per request, and requests per second.

A trivial local server (another process, plain asyncio) answers every request at once with a canned vLLM-style
stream: a role chunk, 10 one-token chunks, a usage chunk and ``[DONE]``, in chunked transfer encoding. The real
``VllmBackend`` (load, preprocess, run) sends the requests; this process's CPU time over the run, divided by the
requests, is the client's cost per request. Targets: under 0.3 ms of CPU per request, and at least 1,000 requests/s
with 64 in flight. The median of several rounds is judged, so that one noisy round on a shared machine does not.

    python perf/client_overhead.py [--requests 10000] [--concurrency 64] [--rounds 3] [--keep-outputs]

``--keep-outputs`` measures the run as it is when quality is scored: each request's stream pieces kept (the answer's
text is decoded afterwards, outside the measured run, as it is outside the metered window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from typing import Any

from pytest_aienergyscore.backends import LoadRequest
from pytest_aienergyscore.backends.vllm.backend import VllmBackend
from pytest_aienergyscore.rules.tasks import get_task

CPU_LIMIT_MS = 0.3
RATE_FLOOR = 1000.0


def _chunked(events: list[dict[str, Any] | str]) -> bytes:
    out = b""
    for event in events:
        data = b"data: " + (event.encode() if isinstance(event, str) else json.dumps(event).encode()) + b"\n\n"
        out += b"%x\r\n%s\r\n" % (len(data), data)
    return out + b"0\r\n\r\n"


def canned_stream(tokens: int = 10) -> bytes:
    chunk = {"object": "text_completion", "model": "trivial"}
    events: list[dict[str, Any] | str] = [{**chunk, "choices": [{"index": 0, "text": "", "finish_reason": None}]}]
    events += [{**chunk, "choices": [{"index": 0, "text": " tok", "finish_reason": None}]} for _ in range(tokens)]
    usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
    events += [{**chunk, "choices": [], "usage": usage}, "[DONE]"]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + _chunked(events)


def models_answer() -> bytes:
    body = json.dumps({"object": "list", "data": [{"id": "trivial", "object": "model", "owned_by": "vllm"}]}).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def serve(sock: socket.socket) -> None:
    """The trivial server: reads each request, answers at once; keep-alive, no parsing beyond what framing needs."""
    stream, models = canned_stream(), models_answer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(models if head.startswith(b"GET") else stream)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def measure(port: int, requests: int, concurrency: int, keep: bool = False) -> tuple[float, float, float]:
    """(CPU ms per request, requests per second, the system-call share of that CPU) of one run of the backend."""
    backend = VllmBackend()
    backend.keep_outputs = keep
    options = (("endpoint", f"http://127.0.0.1:{port}/v1"), ("concurrency", concurrency), ("timeout_s", 30.0))
    backend.load(LoadRequest("trivial", None, get_task("text_generation"), "server", False, options))
    try:
        prepared = backend.preprocess([{"text": f"prompt number {i}"} for i in range(requests)])
        before, wall = os.times(), time.perf_counter()
        work = backend.run("generate", prepared, {}, lambda n: None)
        after, wall = os.times(), time.perf_counter() - wall
        user, system = after.user - before.user, after.system - before.system
    finally:
        backend.close()
    if work.details["succeeded"] != requests or work.tokens != 10 * requests:
        raise SystemExit(f"the run did not complete: {work.details['succeeded']} of {requests} requests succeeded")
    if keep and (work.outputs is None or backend.readable_outputs(work.outputs[:1]) != [" tok" * 10]):
        raise SystemExit("--keep-outputs: the answers were not kept")
    cpu = user + system
    return cpu / requests * 1000, requests / wall, system / cpu if cpu else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-outputs", action="store_true", help="keep each answer, as when quality is scored")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock,), daemon=True)
    server.start()
    try:
        measure(port, 1000, args.concurrency, args.keep_outputs)  # warm-up: imports, first connections
        results = [measure(port, args.requests, args.concurrency, args.keep_outputs) for _ in range(args.rounds)]
        single = measure(port, min(args.requests, 3000), 1, args.keep_outputs)
    finally:
        server.terminate()
        server.join(timeout=10)
    cpu_ms = statistics.median(r[0] for r in results)
    rate = statistics.median(r[1] for r in results)
    rounds = ", ".join(f"{c:.3f} ms ({s:.0%} system)/{r:,.0f} req/s" for c, r, s in results)
    kept = ", answers kept" if args.keep_outputs else ""
    print(f"client CPU per request, concurrency {args.concurrency}{kept}: {cpu_ms:.3f} ms (limit {CPU_LIMIT_MS} ms)")
    print(f"requests per second, concurrency {args.concurrency}: {rate:,.0f} (floor {RATE_FLOOR:,.0f})")
    print(f"rounds of {args.requests:,} requests: {rounds}")
    print(f"concurrency 1 (the protocol's load): {single[0]:.3f} ms CPU per request, {single[1]:,.0f} req/s")
    ok = cpu_ms < CPU_LIMIT_MS and rate >= RATE_FLOOR
    print("client overhead: " + ("OK" if ok else "TOO HIGH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
