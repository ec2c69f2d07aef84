"""A real HTTP server on 127.0.0.1 that answers the vllm backend the way a hostile or broken server would.

It speaks enough of the OpenAI API for a whole benchmark (``GET /v1/models``, streamed completions that honour
``max_tokens``), and each test swaps in the misbehaviour it is about: echoing the ``Authorization`` header in an error
body, a malformed ``Content-Length``, a body that never ends, a ping every fraction of a second, absurd token counts.
It runs on its own event loop in a thread, started and stopped by the test (``with hostile_server(...) as server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import LoopbackServer


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body or b"{}")
        assert isinstance(data, dict)
        return data


Writer = asyncio.StreamWriter
Handler = Callable[[Request, Writer], Awaitable[None]]


def head(status: int, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    """A response head; ``Connection: close`` always, so that each connection carries one request."""
    lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(writer: Writer, status: int, body: bytes, content_type: str = "application/json") -> None:
    writer.write(head(status, {"Content-Type": content_type}, len(body)) + body)


def event(data: dict[str, Any] | str) -> bytes:
    return b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"


def completion_events(request: Request, usage: dict[str, Any] | None = None, text: str = "a") -> bytes:
    """A well-formed streamed completion of ``max_tokens`` one-token chunks, a usage chunk and ``[DONE]``."""
    tokens = int(request.json().get("max_tokens", 4))
    chunks = [event({"choices": [{"index": 0, "text": text}]}) for _ in range(tokens)]
    counts = {"prompt_tokens": 3, "completion_tokens": tokens} if usage is None else usage
    chunks.append(event({"choices": [], "usage": counts}))
    return b"".join(chunks) + event("[DONE]")


async def good_completion(request: Request, writer: Writer) -> None:
    body = completion_events(request)
    writer.write(head(200, {"Content-Type": "text/event-stream"}, len(body)) + body)


async def good_models(request: Request, writer: Writer) -> None:
    answer(writer, 200, json.dumps({"object": "list", "data": [{"id": "m", "owned_by": "vllm"}]}).encode())


@dataclass
class HostileServer(LoopbackServer):
    """``models`` answers GET /v1/models, ``post`` every POST; ``seen`` holds every request read. With
    ``keep_alive`` a connection carries request after request (the handlers then write their own heads)."""

    models: Handler = good_models
    post: Handler = good_completion
    keep_alive: bool = False
    seen: list[Request] = field(default_factory=list)
    open_connections: int = 0  # connections the client has not closed yet

    def __post_init__(self) -> None:
        self._init_loop("hostile-server")

    async def _handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.open_connections += 1
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.seen.append(request)
                await (self.models if method == "GET" else self.post)(request, writer)
                await writer.drain()
                if not self.keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()


@contextlib.contextmanager
def hostile_server(keep_alive: bool = False, **handlers: Handler) -> Iterator[HostileServer]:
    server = HostileServer(keep_alive=keep_alive, **handlers).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
