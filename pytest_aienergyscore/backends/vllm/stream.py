"""One streamed answer read and judged: its server-sent events parsed, and the counts it carries checked.

This is the code that runs for every token, so it stays lean (only the events that matter are JSON-decoded), and it
reads what an untrusted server sends: work stays linear in the stream's size, one event may not exceed
``MAX_EVENT_BYTES``, and token counts that cannot be true (negative, not whole numbers, above ``max_tokens`` and a
margin) fail the request instead of entering the figures. Error texts are masked (``redact``) before they are cut
short, since a server may repeat the request's headers, API key included, in its errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pytest_aienergyscore.backends.secret import Secret, redact

MAX_EVENT_BYTES = 4 << 20  # one server-sent event: a token chunk is under a kilobyte, logprobs and all
TOKEN_MARGIN = 8  # completion tokens a server may report above max_tokens (an end token counted, say)


class RequestFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may help."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(slots=True)
class Result:
    """What one request (all its attempts) came to."""

    ok: bool
    started: float
    ended: float
    first_token: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    from_usage: bool = True
    retries: int = 0
    error: str | None = None
    # the stream's raw pieces as they came (references only: nothing is copied or decoded inside the metered window),
    # kept when the answer's text is wanted afterwards (``streamed_text``); None when not asked for
    pieces: list[bytes] | None = None


def error_message(body: bytes, secrets: tuple[Secret, ...] = ()) -> str:
    """The server's reason from any of the error shapes seen: ``{"error": {...}}``, ``{"error": "..."}``,
    ``{"detail": ...}`` (FastAPI), or plain text; ``secrets`` masked before anything is cut short, so that no part of
    a key the server repeated survives."""
    text = redact(body.decode("utf-8", "replace"), secrets).strip()
    first_line = text.splitlines()[0][:200] if text else "(empty body)"
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            error = data.get("error", data.get("detail", data.get("message")))
            if isinstance(error, dict):
                error = error.get("message", error)
            if error is not None:
                return " ".join(str(error).split())[:200]
    except (ValueError, RecursionError):  # not JSON, or JSON nested deeper than a parser can follow
        return first_line
    return " ".join(text.split())[:200]


class StreamReader:
    """Server-sent events of one streamed completion: time of the first token, the last ``usage``, and a count of
    streamed pieces for servers that send no usage. Only the events that matter are JSON-decoded.

    Linear in the stream's size whatever the server sends: a piece in which no event ends is only held, never
    searched again, and the held pieces are joined once, when their event ends (``joined_bytes`` counts what those
    joins copied: each byte at most twice). One event may not exceed ``MAX_EVENT_BYTES``.
    """

    __slots__ = (
        "_cr",
        "_held",
        "_held_bytes",
        "chunks",
        "done",
        "error",
        "first_token",
        "joined_bytes",
        "secrets",
        "usage",
    )

    def __init__(self, secrets: tuple[Secret, ...] = ()) -> None:
        self.secrets = secrets  # masked in an error event's message before it is cut to length
        self._held: list[bytes] = []  # the start of an event that has not ended yet
        self._held_bytes = 0
        self._cr = False  # the last piece ended in a CR, whose LF may start the next one
        self.first_token: float | None = None
        self.usage: Any = None
        self.chunks = 0
        self.error: str | None = None
        self.done = False
        self.joined_bytes = 0

    def feed(self, piece: bytes, now: float) -> None:
        if self._cr or b"\r" in piece:
            piece = self._lf_only(piece)
        held = self._held
        if piece.find(b"\n\n") < 0 and not (held and held[-1].endswith(b"\n") and piece.startswith(b"\n")):
            self._hold(piece)
            return
        if held:
            data = b"".join([*held, piece])
            self.joined_bytes += len(data)
            self._held, self._held_bytes = [], 0
        else:
            data = piece
        *events, rest = data.split(b"\n\n")
        if rest:
            self._hold(rest)
        for event in events:
            # the common case once tokens flow, inline (this runs for every token): a token chunk, counted without
            # decoding; a chunk that carries usage (not ``"usage": null``) or surely no text is decoded or skipped,
            # so that it never counts as a token
            if self.first_token is not None and _plain_event(event):
                if b'"usage"' in event and b'"usage":null' not in event and b'"usage": null' not in event:
                    self._event(event[5:].strip(), now)
                elif not _surely_empty(event):
                    self.chunks += 1
            else:
                self._one(event, now)

    def _lf_only(self, piece: bytes) -> bytes:
        """CRLF line ends as LF; a CR at the end of a piece waits for the LF that may start the next one."""
        if self._cr:
            piece, self._cr = b"\r" + piece, False
        if piece.endswith(b"\r"):
            piece, self._cr = piece[:-1], True
        return piece.replace(b"\r\n", b"\n")

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        self._held.append(piece)
        self._held_bytes += len(piece)
        if self._held_bytes > MAX_EVENT_BYTES:
            raise RequestFailed(f"the server sent an event of more than {MAX_EVENT_BYTES >> 20} MB", False)

    def _one(self, event: bytes, now: float) -> None:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                self._data(line[5:].strip(), now)

    def _data(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
        elif self.first_token is not None or not _surely_empty(payload) or _NON_NULL_USAGE.search(payload):
            self._event(payload, now)

    def _event(self, payload: bytes, now: float) -> None:
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise RequestFailed(f"the stream carried something that is not JSON: {payload[:80]!r}", True) from None
        if not isinstance(event, dict):
            return
        if event.get("error"):
            self.error = error_message(payload, self.secrets)
            return
        usage = event.get("usage")
        if isinstance(usage, dict):  # the two counts are all that is kept (checked in checked_result)
            self.usage = {
                "completion_tokens": usage.get("completion_tokens"),
                "prompt_tokens": usage.get("prompt_tokens"),
            }
        elif usage is not None:
            self.usage = usage  # not an object: checked_result says so
        choices = event.get("choices") or ()
        if isinstance(choices, list) and choices and isinstance(choices[0], dict) and _has_text(choices[0]):
            self.chunks += 1
            if self.first_token is None:
                self.first_token = now


def _plain_event(event: bytes) -> bool:
    """One ``data:`` line of JSON without an error in it (an error is always decoded, to report its message)."""
    return event.startswith(b"data: {") and b"\n" not in event and b'"error"' not in event


_NON_NULL_USAGE = re.compile(rb'"usage"\s*:\s*[^n\s]')


def _surely_empty(payload: bytes) -> bool:
    """A chunk that carries no text for certain (vLLM's and transformers serve's opening role chunk, a usage chunk),
    known without decoding it; anything less certain is decoded."""
    if b'"reasoning' in payload or b'"error"' in payload or payload.count(b'"text"') != payload.count(b'"text":""'):
        return False
    return payload.count(b'"content"') == payload.count(b'"content":""')


def _has_text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = {}
    return bool(choice.get("text") or delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"))


# -- the counts a stream carried, checked ----------------------------------------------------------------------------
def completion_limit(body: bytes) -> int | None:
    """The most completion tokens a server may report for a request: ``max_tokens`` x ``n`` and a margin; None when
    the body asks for no bound (a test's own override replaced max_tokens)."""
    fields = json.loads(body)
    asked, sequences = fields.get("max_tokens"), fields.get("n", 1)
    if not is_count(asked) or not is_count(sequences):
        return None
    total = int(asked) * int(sequences)
    return total + max(TOKEN_MARGIN, total // 10)


def is_count(value: Any) -> bool:
    """A whole number >= 0 (a bool is no count), as every token count a server reports must be."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _brief(value: Any) -> str:
    """A value from the server, short: scalars as they are (cut), anything else by its type."""
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:39] + "…"
    return f"a {type(value).__name__}"


def checked_result(
    stream: StreamReader, started: float, ended: float, retries: int, limit: int | None = None
) -> Result:
    """The request's result; RequestFailed when the server's counts cannot be true (negative, not whole numbers, or
    more completion tokens than were asked for), since every per-token figure would inherit them."""
    usage = stream.usage
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise RequestFailed(f"the server's usage is not an object but {_brief(usage)}", False)
    completion, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    for name, value in (("completion_tokens", completion), ("prompt_tokens", prompt)):
        if value is not None and not is_count(value):
            raise RequestFailed(f"the server reported {name} {_brief(value)}: not a whole number >= 0", False)
    from_usage = completion is not None
    counted = int(completion) if completion is not None else stream.chunks
    if limit is not None and counted > limit:
        what = "completion tokens" if from_usage else "streamed pieces of text"
        raise RequestFailed(
            f"the server reported {_brief(counted)} {what} for a request of at most {limit} (max_tokens x n, and a "
            "margin)",
            False,
        )
    return Result(
        ok=True,
        started=started,
        ended=ended,
        first_token=stream.first_token,
        prompt_tokens=prompt,
        completion_tokens=counted,
        from_usage=from_usage,
        retries=retries,
    )


# -- the text a stream carried, read after the metered phases ---------------------------------------------------------
def streamed_text(pieces: list[bytes], secrets: tuple[Secret, ...] = ()) -> str:
    """The answer's text from a stream's raw pieces: each event's ``text`` (completions) or ``delta.content`` (chat)
    in the order sent. A reasoning model's ``reasoning_content`` is its thinking, not its answer, and is left out.
    Read only after the phases end, so the JSON decoding the hot path avoids costs nothing metered; ``secrets`` are
    masked, since whatever a server sent back may repeat the request's key."""
    data = b"".join(pieces).replace(b"\r\n", b"\n")
    texts = []
    for line in data.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        try:
            event = json.loads(line[5:].strip())
        except (ValueError, RecursionError):  # [DONE], or a line that is not JSON
            continue
        texts.append(_answer_text(event))
    return redact("".join(texts), secrets)


def _answer_text(event: Any) -> str:
    """One event's piece of the answer ("" for a role, usage or error chunk)."""
    choices = event.get("choices") if isinstance(event, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    text = choice.get("text") or (delta.get("content") if isinstance(delta, dict) else None)
    return text if isinstance(text, str) else ""
