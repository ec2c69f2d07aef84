"""A lean HTTP/1.1 transport for httpx: keep-alive connections on asyncio streams, one per request in flight.

Why not httpx's own transport: on the small machines this project runs on, httpcore's pool, h11 and anyio cost
0.4-1 ms of CPU per streamed request, and the pool rescans every connection for every request, so at concurrency 64
the client itself became the bottleneck (about 500 requests/s). A benchmark client must never be the bottleneck, so
this transport does only what the vllm backend needs, cheaply: plain-HTTP requests with a body already in memory, one
write per request, responses framed by Content-Length, chunked encoding or connection close, streamed to the caller as
they arrive (time to first token is measured on them). It speaks httpx's interface (a Request in, a Response out,
httpx's exceptions), so the backend is ordinary httpx code; HTTPS endpoints use httpx's standard transport instead.

Timeouts are per read (connect, first byte, each later piece): a stalled server raises ``httpx.ReadTimeout`` and a
stream cut short raises ``httpx.RemoteProtocolError``; the caller decides whether to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

_HEAD_LIMIT = 1 << 16
_READ_SIZE = 1 << 16
MAX_CHUNK = 64 << 20  # one chunk of a chunked body is buffered whole: no more than this


class _Connection:
    """One keep-alive TCP connection, with a watchdog that aborts it when the server stops sending.

    The watchdog is lazy: each read only moves the deadline forward, and the one timer, when it fires, either finds
    the deadline passed (the server stalled) or sleeps again until the new deadline. A timer per read would cost a
    timer handle and a cancellation each time, for a deadline that almost never passes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout_s = timeout_s
        self.timed_out = False
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """(Re)start the read deadline."""
        self._deadline = self._loop.time() + self.timeout_s
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._deadline, self._check)

    def disarm(self) -> None:
        self._deadline = None  # the timer, if any, finds nothing to do when it fires

    def _check(self) -> None:
        self._watchdog = None
        if self._deadline is None:
            return
        if self._loop.time() >= self._deadline:
            self.timed_out = True
            self.writer.transport.abort()
        else:
            self._watchdog = self._loop.call_at(self._deadline, self._check)

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.transport.is_closing()

    def close(self) -> None:
        self._deadline = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.writer.transport.abort()


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive on asyncio streams. Holds at most ``max_idle`` idle connections per host."""

    def __init__(self, timeout_s: float, max_idle: int = 64) -> None:
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"LeanTransport speaks plain http only, not {request.url.scheme}")
        key = (request.url.host, request.url.port or 80)
        payload = _serialise(request, await request.aread())
        for attempt in (0, 1):
            conn, reused = await self._checkout(key, request)
            try:
                head = await self._send(conn, payload)
                break
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                conn.close()
                # A reused connection that the server had closed while idle: one fresh try is safe, since the
                # server never read the request. Anything else is the server's failure, reported to the caller.
                if reused and attempt == 0 and not conn.timed_out and _nothing_read(err):
                    continue
                raise _transport_error(conn, err, request) from None
            except BaseException:
                conn.close()
                raise
        status, headers, framing, keep_alive = _parse_head(head, request)
        stream = _Body(self, key, conn, framing, keep_alive and request.method != "HEAD", request)
        return httpx.Response(status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"})

    async def _checkout(self, key: tuple[str, int], request: httpx.Request) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(key[0], key[1], limit=_HEAD_LIMIT), self.timeout_s
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {self.timeout_s:g} s", request=request) from None
        except OSError as err:
            reason = "connection refused" if isinstance(err, ConnectionRefusedError) else err.strerror or str(err)
            raise httpx.ConnectError(reason, request=request) from None
        return _Connection(reader, writer, self.timeout_s), False

    async def _send(self, conn: _Connection, payload: bytes) -> bytes:
        conn.writer.write(payload)
        if conn.writer.transport.get_write_buffer_size() > _READ_SIZE:
            await conn.writer.drain()
        conn.arm()
        try:
            return await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ConnectionError("response head too large") from None
        finally:
            conn.disarm()

    def release(self, key: tuple[str, int], conn: _Connection) -> None:
        """Keep a connection whose response was read to the end; close it if the pool is full."""
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle and conn.usable():
            idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _Body(httpx.AsyncByteStream):
    """The response body, streamed as it arrives; the connection goes back to the pool once it was read whole."""

    def __init__(
        self,
        transport: LeanTransport,
        key: tuple[str, int],
        conn: _Connection,
        framing: int | None,
        keep_alive: bool,
        request: httpx.Request,
    ) -> None:
        self.transport, self.key, self.conn = transport, key, conn
        self.framing = framing  # a length, CHUNKED, or None for "until the server closes"
        self.keep_alive = keep_alive
        self.request = request
        self.complete = False
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        try:
            if self.framing == CHUNKED:
                pieces = self._chunked()
            elif self.framing is None:
                pieces = self._until_close()
            else:
                pieces = self._sized(self.framing)
            async for piece in pieces:
                yield piece
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError) as err:
            self.keep_alive = False
            raise _transport_error(conn, err, self.request) from None
        finally:
            conn.disarm()

    async def _sized(self, remaining: int) -> AsyncIterator[bytes]:
        reader, conn = self.conn.reader, self.conn
        while remaining > 0:
            conn.arm()
            piece = await reader.read(min(remaining, _READ_SIZE))
            if not piece:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(piece)
            yield piece
        self.complete = True

    async def _chunked(self) -> AsyncIterator[bytes]:
        """Chunked bodies, decoded from whatever has arrived: one yield per read, however many chunks it held.

        Linear in the body's size: what is left of an unfinished chunk is decoded again only once enough has
        arrived to finish it (its size line says how much), not after every read."""
        reader, conn = self.conn.reader, self.conn
        parts: list[bytes] = []
        have = need = 0
        while True:
            conn.arm()
            piece = await reader.read(_READ_SIZE)
            if not piece:
                raise asyncio.IncompleteReadError(b"".join(parts), None)
            parts.append(piece)
            have += len(piece)
            if have < need:
                continue
            data, rest, done = _decode_chunks(b"".join(parts))
            if data:
                yield data
            if done:
                self.complete = True
                return
            parts, have, need = [rest], len(rest), _bytes_to_next_chunk(rest)

    async def _until_close(self) -> AsyncIterator[bytes]:
        reader, conn = self.conn.reader, self.conn
        self.keep_alive = False
        while True:
            conn.arm()
            piece = await reader.read(_READ_SIZE)
            if not piece:
                if conn.timed_out:
                    raise ConnectionError("timed out")
                self.complete = True
                return
            yield piece

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.disarm()
        if self.complete and self.keep_alive:
            self.transport.release(self.key, self.conn)
        else:  # a body not read to its end leaves the connection mid-message: it cannot carry another request
            self.conn.close()


CHUNKED = -1


def _decode_chunks(buffer: bytes) -> tuple[bytes, bytes, bool]:
    """The data of every complete chunk in ``buffer``, what is left over, and whether the last chunk was seen."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(buffer[pos:eol].split(b";", 1)[0], 16)
        start = eol + 2
        if size == 0:  # the last chunk: an empty line, or trailers and then an empty line
            if buffer.startswith(b"\r\n", start):
                return b"".join(out), b"", True
            if buffer.find(b"\r\n\r\n", start) >= 0:
                return b"".join(out), b"", True
            break
        if len(buffer) < start + size + 2:
            break
        out.append(buffer[start : start + size])
        pos = start + size + 2
    return b"".join(out), buffer[pos:], False


def _bytes_to_next_chunk(rest: bytes) -> int:
    """How many bytes must be buffered before the chunk starting ``rest`` can be decoded: its size line, data and
    CRLF when the size line is complete, else one more byte. A size line (or the trailers after the last chunk) has at
    most ``_HEAD_LIMIT`` bytes and a chunk at most ``MAX_CHUNK`` (ValueError otherwise), so a server cannot make the
    buffer grow without end."""
    eol = rest.find(b"\r\n")
    size = int(rest[:eol].split(b";", 1)[0], 16) if eol >= 0 else 0
    if size > MAX_CHUNK:
        raise ValueError(f"a chunk of {size} bytes, more than {MAX_CHUNK} allowed")
    if size:
        return eol + 2 + size + 2
    if len(rest) > _HEAD_LIMIT:
        raise ValueError("a chunk size line or trailers without end")
    return len(rest) + 1


def _serialise(request: httpx.Request, body: bytes) -> bytes:
    """Request line, headers and body as one buffer, so that a request costs one write."""
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"content-length":
            has_length = True
        if lowered == b"transfer-encoding":  # the body is in memory: always sent with a length
            continue
        lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parse_head(head: bytes, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]], int | None, bool]:
    """Status, headers, body framing and whether the connection may be reused."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}", request=request)
    status = int(parts[1])
    keep_alive = parts[0] == b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = []
    framing: int | None = None
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" and framing != CHUNKED:
            framing = _content_length(value, framing, request)
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            framing = CHUNKED
        elif lowered == b"connection":
            keep_alive = b"close" not in value.lower() and (keep_alive or b"keep-alive" in value.lower())
    if status in (204, 304) or 100 <= status < 200 or request.method == "HEAD":
        framing = 0
    return status, headers, framing, keep_alive


def _content_length(value: bytes, earlier: int | None, request: httpx.Request) -> int:
    """A Content-Length: ASCII digits only (``int`` would take ``+1``, `` 1_0``, or fail on 5,000 digits), and the
    same value if the header comes twice; anything else is the server's protocol error, in one line."""
    if not value.isdigit() or len(value) > 18 or (earlier is not None and earlier != int(value)):
        raise httpx.RemoteProtocolError(f"malformed Content-Length {value[:40]!r}", request=request)
    return int(value)


def _nothing_read(err: BaseException) -> bool:
    return not isinstance(err, asyncio.IncompleteReadError) or not err.partial


def _transport_error(conn: _Connection, err: BaseException, request: httpx.Request) -> httpx.TransportError:
    """httpx's exception for what happened: a read deadline passed, or the server closed or broke the stream."""
    if conn.timed_out:
        return httpx.ReadTimeout(f"no data from the server for {conn.timeout_s:g} s", request=request)
    if isinstance(err, asyncio.IncompleteReadError):
        return httpx.RemoteProtocolError("the server closed the connection mid-response", request=request)
    if isinstance(err, ConnectionError):
        return httpx.ReadError(str(err) or type(err).__name__, request=request)
    return httpx.RemoteProtocolError(f"malformed response ({err})", request=request)
