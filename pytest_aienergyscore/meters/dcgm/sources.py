"""Where the dcgm meter reads its counters: a dcgm-exporter's ``/metrics`` page, or a Prometheus server scraping them.

Why this shape:
- One plain HTTP GET per source and read, with the standard library and a short timeout: reads sit at the edges of
  measurement windows, and an exporter that hangs must cost seconds, not the benchmark.
- Credentials in a URL (``user:password@`` or a token in the query string) serve the request and go nowhere else:
  every message and fact uses :func:`public_url`, which has neither.
- The exporter's page is parsed by prometheus-client's parser, not by hand: escaping, comments, timestamps and
  type suffixes have rules that are not ours to re-derive.
- A Prometheus server is asked for a range vector over a few minutes rather than an instant value: its samples carry
  the real scrape times (so the value's age is known) and their spacing is the scrape interval (the counter's update
  period as seen through Prometheus), and the samples between two reads show a counter reset that the two reads alone
  would miss.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
EXPORTER = "exporter"
PROMETHEUS = "prometheus"
PROMETHEUS_QUERY_PATH = "/api/v1/query"
DEFAULT_TIMEOUT_S = 5.0
MAX_BODY_BYTES = 64 * 2**20
_FORCED_KINDS = {"dcgm": EXPORTER, "prometheus": PROMETHEUS}


class SourceError(Exception):
    """A source could not be read or holds no usable counter. The message is safe to print: it has no credentials."""


class HttpStatusError(SourceError):
    """The server answered with an HTTP error; its body may say why (Prometheus explains refused queries in JSON)."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Series:
    """One GPU's energy counter as a source published it: its labels and samples (time, mJ), oldest first.

    An exporter gives one sample, with a time only if it publishes timestamps; Prometheus gives every scrape in its
    look-back window. The last sample is the current value.
    """

    labels: Mapping[str, str]
    samples: tuple[tuple[float | None, int], ...]

    @property
    def value_mj(self) -> int:
        return self.samples[-1][1]

    @property
    def timestamp(self) -> float | None:
        return self.samples[-1][0]


@dataclass(frozen=True)
class Source:
    """One ``--energy-dcgm-url``: ``request_url`` may hold credentials and is only ever handed to urllib."""

    request_url: str
    kind: str
    public: str

    def fetch(
        self, selector: str = "", lookback_s: float = 300.0, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[Series]:
        """Every series of the energy counter this source publishes (Prometheus: those matching ``selector``)."""
        try:
            if self.kind == EXPORTER:
                return parse_exporter_text(http_get(self.request_url, timeout_s))
            query = f"{METRIC}{selector}[{math.ceil(lookback_s)}s]"
            return parse_prometheus_reply(http_get(prometheus_query_url(self.request_url, query), timeout_s), query)
        except HttpStatusError as err:
            raise SourceError(self._status_message(err)) from None

    def _status_message(self, err: HttpStatusError) -> str:
        if self.kind == EXPORTER:
            return str(err)
        explained = _prometheus_error(err.body)
        if explained:
            return f"{err}: {explained}"
        if err.status == 404:
            return f"{err} (taken for a Prometheus server; a dcgm-exporter URL ends in /metrics)"
        return str(err)


def public_url(url: str) -> str:
    """The URL without user, password, query string or fragment: the only form of it that is printed or stored."""
    text = url.strip()
    try:
        parts = urlsplit(text) if "://" in text else None
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        parts = None
    if parts is None:  # not a URL urlsplit can take apart: keep what follows any user:password@
        return text.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def make_source(url: str) -> Source:
    """A source from a URL: ``dcgm+`` or ``prometheus+`` before the scheme says its kind, else a path ending in
    ``/metrics`` is an exporter and anything else a Prometheus server (base URL or its ``/api/v1/query``)."""
    usage = (
        "give http://HOST:9400/metrics for a dcgm-exporter or http://HOST:9090 for a Prometheus server "
        "(dcgm+http:// or prometheus+http:// forces the kind)"
    )
    try:
        parts = urlsplit(url.strip())
        hostname, _ = parts.hostname, parts.port  # both parse on access: a bad [IPv6] host or port raises here
    except ValueError as err:
        raise SourceError(f"{public_url(url)}: not a valid URL ({err}); {usage}") from None
    forced, plus, scheme = parts.scheme.lower().rpartition("+")
    if (plus and forced not in _FORCED_KINDS) or scheme not in ("http", "https") or not hostname:
        raise SourceError(f"{public_url(url)}: not an http(s) URL; {usage}")
    by_path = EXPORTER if parts.path.rstrip("/").endswith("/metrics") else PROMETHEUS
    kind = _FORCED_KINDS[forced] if plus else by_path
    request_url = urlunsplit(parts._replace(scheme=scheme))
    return Source(request_url, kind, public_url(request_url))


def http_get(url: str, timeout_s: float) -> bytes:
    """The body of a GET, or SourceError saying why not in words that carry no credentials."""
    try:
        request = _request(url)
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            body: bytes = reply.read(MAX_BODY_BYTES)
            return body
    except urllib.error.HTTPError as err:
        raise HttpStatusError(err.code, str(err.reason), _error_body(err)) from None
    except urllib.error.URLError as err:
        raise SourceError(f"cannot be reached ({err.reason})") from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, a port that does not speak HTTP
        raise SourceError(f"cannot be reached ({type(err).__name__}: {err})") from None
    except ValueError as err:  # e.g. a port that is not a number
        raise SourceError(f"not a usable URL ({err})") from None


def _request(url: str) -> urllib.request.Request:
    """urllib ignores ``user:password@`` in a URL: move it into a Basic Authorization header."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    headers = {"Accept": "text/plain;version=0.0.4;q=1, application/json;q=0.9, */*;q=0.1"}
    if at:
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    return urllib.request.Request(urlunsplit(parts._replace(netloc=host)), headers=headers)


def _error_body(err: urllib.error.HTTPError) -> bytes:
    try:
        return err.read(MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        return b""


def parse_exporter_text(body: bytes) -> list[Series]:
    """The energy counter's series in a page of Prometheus text format, or SourceError naming what is wrong."""
    from prometheus_client.parser import text_string_to_metric_families

    text = body.decode("utf-8", errors="replace")
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, KeyError, TypeError) as err:
        raise SourceError(
            f"does not answer in Prometheus text format ({_short(str(err))}; the reply starts {_short(text)!r})"
        ) from None
    found = []
    for family in families:
        for sample in family.samples:
            if sample.name not in (METRIC, f"{METRIC}_total"):
                continue
            millijoules = _millijoules(sample.value)
            if millijoules is not None:
                stamp = None if sample.timestamp is None else float(sample.timestamp)
                found.append(Series(dict(sample.labels), ((stamp, millijoules),)))
    if not found:
        raise SourceError(
            f"publishes no {METRIC} ({len(families)} other metric families; is the counter in the exporter's "
            "collectors file, dcgm-exporter -f?)"
        )
    return found


def prometheus_query_url(base: str, query: str) -> str:
    """``base`` (a server URL, with or without ``/api/v1/query``; its own query parameters kept) asking ``query``."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    if not path.endswith(PROMETHEUS_QUERY_PATH):
        path += PROMETHEUS_QUERY_PATH
    params = [*parse_qsl(parts.query, keep_blank_values=True), ("query", query)]
    return urlunsplit(parts._replace(path=path, query=urlencode(params)))


def parse_prometheus_reply(body: bytes, query: str) -> list[Series]:
    """The series of a Prometheus range-vector reply, or SourceError naming what is wrong."""
    try:
        doc = json.loads(body)
    except ValueError:
        start = _short(body.decode("utf-8", errors="replace"))
        raise SourceError(f"is not a Prometheus API (the reply is not JSON; it starts {start!r})") from None
    explained = _prometheus_error(body)
    if explained:
        raise SourceError(f"Prometheus refused {query}: {explained}")
    try:
        data = doc["data"]
        if data["resultType"] != "matrix":
            raise SourceError(f"Prometheus answered a {data['resultType']!r} to {query}, not a range vector")
        series = [_prometheus_series(item) for item in data["result"]]
    except (KeyError, TypeError, ValueError, IndexError):
        raise SourceError(f"is not a Prometheus API (unexpected reply shape to {query})") from None
    found = [s for s in series if s is not None]
    if not found:
        raise SourceError(f"Prometheus has no series for {query} (is the exporter scraped? does the selector match?)")
    return found


def _prometheus_series(item: Mapping[str, Any]) -> Series | None:
    samples = []
    for stamp, text in item["values"]:
        millijoules = _millijoules(_number(str(text)))
        if millijoules is not None:
            samples.append((float(stamp), millijoules))
    if not samples:
        return None
    return Series({str(k): str(v) for k, v in item["metric"].items()}, tuple(samples))


def _prometheus_error(body: bytes) -> str | None:
    """Prometheus's own words for a refused query (``errorType: error``), when the body is its JSON error."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("status") == "error":
        return f"{doc.get('errorType', 'error')}: {doc.get('error', '')}"
    return None


def _number(text: str) -> int | float:
    """Prometheus writes sample values as strings; integers stay exact (mJ counters outgrow float precision)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _millijoules(value: object) -> int | None:
    """Whole millijoules (DCGM's unit), or None for a value that is no number (NaN, a blank field)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return round(value)
    return None


def _short(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
