"""The plugin's configuration, resolved once per session: command line > environment variable > ini key > default.

Every option is described by one :class:`OptionSpec` so that its command-line flag, environment variable, ini key, help
text and validation cannot drift apart. A bad value raises :class:`SettingsError`, which names the option, where the
value came from and what is allowed; the plugin turns it into a pytest usage error (exit status 4).

Only the standard library is imported here: this module is loaded on every pytest start-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

# Backends are whatever packages register under this entry-point group (ours in pyproject.toml, a team's own in its
# package). Only the names are read here, from installed metadata; no backend module is imported at start-up.
BACKEND_ENTRY_POINTS = "pytest_aienergyscore.backends"
METER_ENTRY_POINTS = "pytest_aienergyscore.meters"
CPU_SCOPES = ("process", "machine")
MODEL_CLASSES = ("A", "B", "C")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SettingsError(ValueError):
    """A configuration value that cannot be used, with everything a user needs to fix it in one line."""

    def __init__(self, flag: str, source: str, value: object, allowed: str) -> None:
        self.flag, self.source, self.value, self.allowed = flag, source, value, allowed
        super().__init__(f"{flag}: invalid value {value!r} (from {source}); allowed: {allowed}")


def _choice(choices: Sequence[str] | Callable[[], Sequence[str]]) -> Callable[[str], str]:
    """A parser that accepts one of ``choices`` (or of what the callable returns when a value is parsed)."""

    def parse(raw: str) -> str:
        allowed = choices() if callable(choices) else choices
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(", ".join(allowed))
        return value

    return parse


def registered_entry_points(group: str) -> dict[str, EntryPoint]:
    """Every entry point of ``group`` by name, first on sys.path winning, read from metadata (nothing is imported).

    Unlike ``importlib.metadata.entry_points``, which keeps one metadata folder per distribution name, this reads
    every folder: a stale ``*.egg-info`` left in a source checkout (found first when Python runs from there) must not
    hide the entry points of the installed copy.
    """
    from importlib.metadata import distributions

    found: dict[str, EntryPoint] = {}
    for dist in distributions():
        for entry in dist.entry_points:
            if entry.group == group:
                found.setdefault(entry.name, entry)
    return found


def registered_backends() -> tuple[str, ...]:
    """The names ``--backend`` accepts: every registered backend, sorted; read when a value is parsed, not before."""
    return tuple(sorted(registered_entry_points(BACKEND_ENTRY_POINTS)))


def registered_meters() -> tuple[str, ...]:
    """The names ``--energy-meter`` accepts: auto and every registered meter; read when a value is parsed."""
    return ("auto", *sorted(registered_entry_points(METER_ENTRY_POINTS)))


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError("a positive number")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("a whole number >= 1")
    return value


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("a whole number >= 0")
    return value


def _gpu_list(raw: str) -> tuple[int, ...]:
    """CUDA device ordinals as the process sees them (after CUDA_VISIBLE_DEVICES), e.g. ``0`` or ``0,1``."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError("comma-separated CUDA device ordinals such as 0 or 0,1")
    ordinals = tuple(int(p) for p in parts)
    if len(set(ordinals)) != len(ordinals):
        raise ValueError("comma-separated CUDA device ordinals without repeats")
    return ordinals


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("one of " + ", ".join(_TRUE[:2] + _FALSE[:2]))


def _text(raw: str) -> str:
    return raw.strip()


def _env_name(raw: str) -> str:
    """The name of an environment variable (never a value: a secret must not travel through options)."""
    value = raw.strip()
    if not value.isascii() or not value.replace("_", "a").isalnum() or value[0].isdigit():
        raise ValueError("an environment variable name such as VLLM_API_KEY (letters, digits, _)")
    return value


def _baseline_target(raw: str) -> bool | str | None:
    """Where --energy-save-baseline writes: True for the default path, None for "do not save", else a file path.

    A bare ``--energy-save-baseline`` swallows the next argument, so a value that looks like a test path is refused
    rather than silently becoming the baseline file while the tests it named are not run.
    """
    value = raw.strip()
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return None
    if value.endswith(".py") or "::" in value or os.path.isdir(value):
        raise ValueError("a file path for the baseline (write --energy-save-baseline=PATH, or put the bare flag last)")
    return value


def _url_list(raw: str) -> tuple[str, ...]:
    """URLs separated by commas or whitespace, so that an ini value may also hold one per line."""
    urls = tuple(url for url in re.split(r"[,\s]+", raw) if url)
    if not urls:
        raise ValueError("one or more URLs, separated by commas (or one per line in the ini file)")
    return urls


# One term of --energy-dcgm-gpus: a GPU UUID, an index on every host, host:index, or label=value.
_DCGM_TERM = re.compile(r"(?i:GPU|MIG)-[0-9A-Za-z/-]+|\d+|[^\s,=]+:\d+|[A-Za-z_][A-Za-z0-9_]*=[^,]+")


def _dcgm_selector(raw: str) -> str:
    """Checked here so that a typo is a usage error at start-up, not a failed benchmark later."""
    text = raw.strip()
    if text.startswith("{") and text.endswith("}"):
        return text
    terms = [term.strip() for term in text.split(",")]
    if not all(_DCGM_TERM.fullmatch(term) for term in terms):
        raise ValueError(
            "comma-separated GPU UUIDs (GPU-...), indices (0), host:index (node-1:0) or label=value "
            '(modelName=NVIDIA H100 80GB HBM3), or one Prometheus label selector such as {Hostname="node-1"}'
        )
    return ",".join(terms)


def _model_class(raw: str) -> str:
    """A, B or C in either case: people write the leaderboard's classes both ways."""
    value = raw.strip().upper()
    if value not in MODEL_CLASSES:
        raise ValueError(", ".join(MODEL_CLASSES))
    return value


class OptionSpec(NamedTuple):
    """One setting: how it is spelled in each source, how it is parsed, and its help text (shared by all sources).

    A NamedTuple rather than a dataclass: this module loads on every pytest start-up, and generating dataclass
    methods costs milliseconds there.
    """

    dest: str
    attr: str
    flag: str
    help: str
    parse: Callable[[str], Any]
    default: Any = None
    env: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    is_flag: bool = False
    multiple: bool = False  # the flag may be repeated; its values are joined with commas before parsing
    const: str | None = None  # an optional value: the flag alone stands for this value (argparse nargs="?")

    @property
    def ini(self) -> str:
        return self.dest

    def help_text(self) -> str:
        extra = []
        if self.env:
            extra.append(f"env {self.env}")
        extra.append(f"ini {self.ini}")
        if self.default not in (None, False, ()):
            extra.append(f"default {self.default}")
        return f"{self.help} ({'; '.join(extra)})"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "energy_backend",
        "backend",
        "--backend",
        "How benchmarks generate work: optimum (optimum-benchmark's energy_star), pytorch (transformers/diffusers "
        "in this process), vllm (an OpenAI-compatible server), or the name of a backend another installed package "
        "registers under the pytest_aienergyscore.backends entry points.",
        _choice(registered_backends),
        default="optimum",
        env="BENCHMARK_BACKEND",
        metavar="NAME",
    ),
    OptionSpec(
        "energy_vllm_endpoint",
        "vllm_endpoint",
        "--vllm-endpoint",
        "Base URL of the vLLM/OpenAI-compatible server for --backend vllm, with or without /v1.",
        _text,
        env="VLLM_ENDPOINT",
        metavar="URL",
    ),
    OptionSpec(
        "energy_output",
        "output_dir",
        "--energy-output",
        "Folder for run folders, archives and session summaries; relative paths on the command line or in the "
        "environment are taken from the current directory, in the ini file from the rootdir.",
        _text,
        default="results",
        env="AIENERGYSCORE_OUTPUT",
        metavar="DIR",
    ),
    OptionSpec(
        "energy_meter",
        "meter",
        "--energy-meter",
        "Energy meter: auto picks nvml when a GPU is visible, else rapl when readable, else estimate; dcgm "
        "(never picked by auto) reads remote GPUs from DCGM exporters given with --energy-dcgm-url; or the name "
        "of a meter another installed package registers under the pytest_aienergyscore.meters entry points.",
        _choice(registered_meters),
        default="auto",
        env="AIENERGYSCORE_METER",
        metavar="NAME",
    ),
    OptionSpec(
        "energy_gpus",
        "gpus",
        "--energy-gpus",
        "CUDA device ordinals to meter (as this process sees them after CUDA_VISIBLE_DEVICES), e.g. 0 or 0,1.",
        _gpu_list,
        default=(0,),
        env="AIENERGYSCORE_GPUS",
        metavar="IDS",
    ),
    OptionSpec(
        "energy_cpu_watts",
        "cpu_watts",
        "--energy-cpu-watts",
        "Watts one fully busy CPU core is assumed to draw, for the estimate meter.",
        _positive_float,
        default=10.0,
        env="AIENERGYSCORE_CPU_WATTS",
        metavar="W",
    ),
    OptionSpec(
        "energy_cpu_scope",
        "cpu_scope",
        "--energy-cpu-scope",
        "CPU time the estimate meter counts: process (this process and its waited-for children) or machine "
        "(every process, for work done by a local server).",
        _choice(CPU_SCOPES),
        default="process",
        env="AIENERGYSCORE_CPU_SCOPE",
        choices=CPU_SCOPES,
    ),
    OptionSpec(
        "energy_dataset",
        "dataset",
        "--energy-dataset",
        "Dataset for energy_star benchmarks instead of the task's official one: a local jsonl/json/csv/parquet file "
        "or a Hub dataset id.",
        _text,
        env="AIENERGYSCORE_DATASET",
        metavar="PATH",
    ),
    OptionSpec(
        "energy_samples",
        "samples",
        "--energy-samples",
        "Run each energy_star benchmark on N samples instead of the protocol's 1,000 (the per-1,000 figure is "
        "then scaled, and marked so).",
        _positive_int,
        env="AIENERGYSCORE_SAMPLES",
        metavar="N",
    ),
    OptionSpec(
        "energy_repeat",
        "repeat",
        "--energy-repeat",
        "Run the metered phases N times; reports give mean, standard deviation and coefficient of variation.",
        _positive_int,
        default=1,
        env="AIENERGYSCORE_REPEAT",
        metavar="N",
    ),
    OptionSpec(
        "energy_warmup",
        "warmup",
        "--energy-warmup",
        "Unmetered warm-up runs before the metered phases.",
        _non_negative_int,
        default=10,
        env="AIENERGYSCORE_WARMUP",
        metavar="N",
    ),
    OptionSpec(
        "energy_trust_remote_code",
        "trust_remote_code",
        "--energy-trust-remote-code",
        "Let transformers run model code shipped with a model repository (off by default).",
        _bool,
        default=False,
        env="AIENERGYSCORE_TRUST_REMOTE_CODE",
        is_flag=True,
    ),
    # -- vllm backend options (issue 4) go here --
    OptionSpec(
        "energy_concurrency",
        "concurrency",
        "--energy-concurrency",
        "Requests in flight at once for --backend vllm: 1 is the AI Energy Score protocol (one at a time); more is "
        "a production-like load, and the record then also gives its steady-state window.",
        _positive_int,
        default=1,
        env="AIENERGYSCORE_CONCURRENCY",
        metavar="N",
    ),
    OptionSpec(
        "energy_vllm_api_key_env",
        "vllm_api_key_env",
        "--vllm-api-key-env",
        "Name of the environment variable that holds the API key for --vllm-endpoint (the key itself is never "
        "taken on the command line nor written anywhere).",
        _env_name,
        default="VLLM_API_KEY",
        env="AIENERGYSCORE_VLLM_API_KEY_ENV",
        metavar="NAME",
    ),
    OptionSpec(
        "energy_vllm_timeout",
        "vllm_timeout",
        "--vllm-timeout",
        "Seconds to wait for the server's next bytes (connecting, the first token, each later piece) before a "
        "request counts as timed out and is retried; a request as a whole, retries included, is given up after 10 "
        "times this.",
        _positive_float,
        default=120.0,
        env="AIENERGYSCORE_VLLM_TIMEOUT",
        metavar="S",
    ),
    OptionSpec(
        "energy_vllm_served_model",
        "vllm_served_model",
        "--vllm-served-model",
        "Model name to request from the server when it differs from the benchmark's model id (default: the model "
        "id, or the one model the server serves).",
        _text,
        env="AIENERGYSCORE_VLLM_SERVED_MODEL",
        metavar="NAME",
    ),
    # -- optimum backend options (issue 5) go here --
    OptionSpec(
        "energy_optimum_python",
        "optimum_python",
        "--optimum-python",
        "Python of the environment that holds optimum-benchmark for --backend optimum (made by "
        "scripts/setup_optimum_env.sh); default .venv-optimum/bin/python under the rootdir when it exists.",
        _text,
        env="AIENERGYSCORE_OPTIMUM_PYTHON",
        metavar="PATH",
    ),
    # -- CI gate and export options (issue 6) go here --
    OptionSpec(
        "energy_save_baseline",
        "save_baseline",
        "--energy-save-baseline",
        "Save this session's figures as a baseline file for later --energy-baseline comparisons; the flag alone "
        "writes <output>/baseline.json (in the environment or ini: a path, or 1 for that default).",
        _baseline_target,
        env="AIENERGYSCORE_SAVE_BASELINE",
        metavar="PATH",
        const="1",
    ),
    OptionSpec(
        "energy_baseline",
        "baseline",
        "--energy-baseline",
        "Compare each benchmark, matched by test id, with this baseline file (written by --energy-save-baseline).",
        _text,
        env="AIENERGYSCORE_BASELINE",
        metavar="PATH",
    ),
    OptionSpec(
        "energy_fail_above",
        "fail_above",
        "--energy-fail-above",
        "Fail the session (exit 1) when a benchmark's Wh per 1,000 queries rose by more than PCT percent over the "
        "baseline; with --energy-repeat >= 3 on both sides only when the rise is also significant.",
        _positive_float,
        env="AIENERGYSCORE_FAIL_ABOVE",
        metavar="PCT",
    ),
    OptionSpec(
        "energy_strict",
        "strict",
        "--energy-strict",
        "Fail the session when the baseline comes from another machine fingerprint (GPU, driver, power limit, "
        "backend, meter) instead of only saying why it was not compared.",
        _bool,
        default=False,
        env="AIENERGYSCORE_STRICT",
        is_flag=True,
    ),
    OptionSpec(
        "energy_require_baseline",
        "require_baseline",
        "--energy-require-baseline",
        "A missing baseline file, or a benchmark missing from it, is an error instead of a warning.",
        _bool,
        default=False,
        env="AIENERGYSCORE_REQUIRE_BASELINE",
        is_flag=True,
    ),
    OptionSpec(
        "energy_json",
        "json_path",
        "--energy-json",
        "Also write the session's energy figures as pytest-benchmark-shaped JSON to PATH.",
        _text,
        env="AIENERGYSCORE_JSON",
        metavar="PATH",
    ),
    # -- AI Energy Score rules options (issue 7) go here --
    OptionSpec(
        "energy_model_class",
        "model_class",
        "--energy-model-class",
        "AI Energy Score model class (A: up to 20B parameters, B: up to 66B, C: larger) instead of the one counted "
        "from the model's config or safetensors headers; needed where the count cannot be had (a vLLM endpoint).",
        _model_class,
        env="AIENERGYSCORE_MODEL_CLASS",
        choices=MODEL_CLASSES,
    ),
    OptionSpec(
        "energy_allow_multi_gpu",
        "allow_multi_gpu",
        "--energy-allow-multi-gpu",
        "Benchmark a class A or B model on more than one GPU instead of refusing; the result is then marked not "
        "comparable with the leaderboard.",
        _bool,
        default=False,
        env="AIENERGYSCORE_ALLOW_MULTI_GPU",
        is_flag=True,
    ),
    # -- remote DCGM meter options (issue 8) go here --
    OptionSpec(
        "energy_dcgm_urls",
        "dcgm_urls",
        "--energy-dcgm-url",
        "For --energy-meter dcgm: a dcgm-exporter URL ending in /metrics (repeat the option, one per host), or a "
        "Prometheus server URL that scrapes them; dcgm+http:// or prometheus+http:// forces the kind.",
        _url_list,
        default=(),
        env="AIENERGYSCORE_DCGM_URLS",
        metavar="URL",
        multiple=True,
    ),
    OptionSpec(
        "energy_dcgm_gpus",
        "dcgm_gpus",
        "--energy-dcgm-gpus",
        "GPUs the dcgm meter reads: comma-separated UUIDs, indices, host:index or label=value terms, or a "
        "Prometheus label selector {...} for Prometheus URLs; default every GPU the URLs publish.",
        _dcgm_selector,
        env="AIENERGYSCORE_DCGM_GPUS",
        metavar="SELECTOR",
    ),
    OptionSpec(
        "energy_dcgm_max_age",
        "dcgm_max_age",
        "--energy-dcgm-max-age",
        "Seconds after which a DCGM counter sample, or a counter that stopped changing, is stale: windows that "
        "read one are invalid.",
        _positive_float,
        default=30.0,
        env="AIENERGYSCORE_DCGM_MAX_AGE",
        metavar="S",
    ),
    OptionSpec(
        "energy_disable",
        "disabled",
        "--no-energy",
        "Turn energy metering off: tests run, nothing is metered and no energy files are written.",
        _bool,
        default=False,
        env="AIENERGYSCORE_DISABLE",
        is_flag=True,
    ),
)

OPTIONS_BY_DEST = {spec.dest: spec for spec in OPTIONS}


class Settings(NamedTuple):
    """Everything the plugin was told, after precedence and validation. Built once, never mutated (``_replace``
    makes a changed copy). A NamedTuple for the same start-up reason as OptionSpec."""

    backend: str = "optimum"
    vllm_endpoint: str | None = None
    output_dir: Path = Path("results")
    meter: str = "auto"
    gpus: tuple[int, ...] = (0,)
    cpu_watts: float = 10.0
    cpu_scope: str = "process"
    dataset: str | None = None
    samples: int | None = None
    repeat: int = 1
    warmup: int = 10
    trust_remote_code: bool = False
    # -- vllm backend fields (issue 4) --
    concurrency: int = 1
    vllm_api_key_env: str = "VLLM_API_KEY"
    vllm_timeout: float = 120.0
    vllm_served_model: str | None = None
    # -- optimum backend fields (issue 5) --
    optimum_python: Path | None = None
    # -- CI gate and export fields (issue 6) --
    save_baseline: Path | None = None
    baseline: Path | None = None
    fail_above: float | None = None
    strict: bool = False
    require_baseline: bool = False
    json_path: Path | None = None
    # -- AI Energy Score rules fields (issue 7) --
    model_class: str | None = None
    allow_multi_gpu: bool = False
    # -- remote DCGM meter fields (issue 8) --
    dcgm_urls: tuple[str, ...] = ()
    dcgm_gpus: str | None = None
    dcgm_max_age: float = 30.0
    disabled: bool = False
    sources: Mapping[str, str] = MappingProxyType({})

    def source_of(self, field_name: str) -> str:
        """Where a setting came from (``command line``, ``environment variable X``, ``ini key x`` or ``default``)."""
        return self.sources.get(field_name, "default")


def resolve_value(spec: OptionSpec, cli_value: Any, env: Mapping[str, str], ini_value: str | None) -> tuple[Any, str]:
    """Pick one option's value and name its source. CLI values already went through argparse (typed for flags)."""
    if cli_value is not None:
        raw, source = cli_value, "command line"
    elif spec.env and env.get(spec.env, "").strip():
        raw, source = env[spec.env], f"environment variable {spec.env}"
    elif ini_value is not None and str(ini_value).strip():
        raw, source = ini_value, f"ini key {spec.ini}"
    else:
        return spec.default, "default"
    if isinstance(raw, bool):
        return raw, source
    if isinstance(raw, (list, tuple)):  # a repeated flag (OptionSpec.multiple)
        raw = ",".join(str(item) for item in raw)
    try:
        return spec.parse(str(raw)), source
    except ValueError as err:
        raise SettingsError(spec.flag, source, raw, str(err)) from None


def _resolve_ci_paths(values: dict[str, Any], sources: Mapping[str, str], cwd: Path, rootdir: Path) -> None:
    """Baseline and export paths, relative ones taken as --energy-output's are (ini: rootdir, else: cwd)."""
    if values["energy_save_baseline"] is True:
        values["energy_save_baseline"] = values["energy_output"] / "baseline.json"
    for dest in ("energy_save_baseline", "energy_baseline", "energy_json"):
        if not values[dest]:
            values[dest] = None
            continue
        path = Path(values[dest]).expanduser()
        base = rootdir if sources[dest] == f"ini key {dest}" else cwd
        values[dest] = path if path.is_absolute() else base / path


def _resolve_optimum_python(value: str | None, sources: Mapping[str, str], cwd: Path, rootdir: Path) -> Path | None:
    """The optimum environment's python: as given (relative to the current directory, or to the rootdir from the ini
    file), else ``.venv-optimum/bin/python`` under the rootdir when it exists. Never resolved through symlinks: a
    venv's python is a link to the base interpreter, and following it would leave the venv."""
    if not value:
        default = rootdir / ".venv-optimum" / "bin" / "python"
        return default if default.exists() else None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (rootdir if sources["energy_optimum_python"].startswith("ini") else cwd) / path
    return path


def build_settings(
    cli: Mapping[str, Any],
    ini: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path,
    rootdir: Path,
) -> Settings:
    """Resolve every option. ``cli`` and ``ini`` are keyed by dest; missing keys mean "not given"."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in OPTIONS:
        value, source = resolve_value(spec, cli.get(spec.dest), env, ini.get(spec.dest))
        values[spec.dest] = value
        sources[spec.dest] = source
    output = Path(values["energy_output"]).expanduser()
    if not output.is_absolute():
        base = rootdir if sources["energy_output"] in ("default", "ini key energy_output") else cwd
        output = base / output
    values["energy_output"] = output
    if values["energy_meter"] == "dcgm" and not values["energy_dcgm_urls"]:
        raise SettingsError(
            "--energy-meter",
            sources["energy_meter"],
            "dcgm",
            "dcgm only together with --energy-dcgm-url URL (env AIENERGYSCORE_DCGM_URLS, ini energy_dcgm_urls)",
        )
    for dest in ("energy_vllm_endpoint", "energy_dataset", "energy_vllm_served_model"):
        if values[dest] == "":
            values[dest] = None
    values["energy_optimum_python"] = _resolve_optimum_python(values["energy_optimum_python"], sources, cwd, rootdir)
    _resolve_ci_paths(values, sources, cwd, rootdir)
    fields = {spec.dest: spec.attr for spec in OPTIONS}
    kwargs = {fields[dest]: value for dest, value in values.items()}
    return Settings(**kwargs, sources={fields[dest]: source for dest, source in sources.items()})
