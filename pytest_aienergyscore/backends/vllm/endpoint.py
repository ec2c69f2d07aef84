"""The server's address as the user gave it (``--vllm-endpoint``), checked once and normalised.

Users paste the URL in every form their server's docs show (``http://host:port``, ``.../v1``, a trailing slash);
all of them must name the same endpoint, so that the record, the error lines and the requests agree. A URL that
carries credentials is refused: the API key travels in an environment variable, never in an option.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_aienergyscore.backends.base import BackendError


@dataclass(frozen=True)
class Endpoint:
    """A server's base URL, normalised: no credentials, no ``/v1``, no trailing slash."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    def url(self, route: str) -> str:
        return f"{self.base}/v1{route}"

    def __str__(self) -> str:
        return f"{self.base}/v1"


def parse_endpoint(raw: str | None) -> Endpoint:
    """``http://host:port``, ``.../v1``, with or without a trailing slash: all the same endpoint."""
    text = (raw or "").strip()
    if not text:
        raise BackendError("--backend vllm needs a server: pass --vllm-endpoint URL or set VLLM_ENDPOINT")
    parts = urlsplit(text)
    if parts.username or parts.password:
        shown = f"{parts.scheme}://{parts.hostname}"
        raise BackendError(
            f"--vllm-endpoint {shown}: credentials in the URL are not taken; put the API key in an environment "
            "variable (VLLM_API_KEY, or the one named with --vllm-api-key-env)"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise BackendError(f"--vllm-endpoint {text!r}: not an http(s) URL such as http://127.0.0.1:8000/v1")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[: -len("/v1")].rstrip("/")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(parts.scheme, parts.hostname, port or default_port, prefix)
