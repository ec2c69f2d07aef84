"""The plugin's configuration, resolved once per session: command line > environment variable > ini key > default.

Every option is described by one :class:`OptionSpec` so that its command-line flag, environment variable, ini key, help
text and validation cannot drift apart. A bad value raises :class:`SettingsError`, which names the option, where the
value came from and what is allowed; the plugin turns it into a pytest usage error (exit status 4).

Only the standard library is imported here: this module is loaded on every pytest start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("optimum", "pytorch", "vllm")
METERS = ("auto", "nvml", "rapl", "estimate")
CPU_SCOPES = ("process", "machine")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class SettingsError(ValueError):
    """A configuration value that cannot be used, with everything a user needs to fix it in one line."""

    def __init__(self, flag: str, source: str, value: object, allowed: str) -> None:
        self.flag, self.source, self.value, self.allowed = flag, source, value, allowed
        super().__init__(f"{flag}: invalid value {value!r} (from {source}); allowed: {allowed}")


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(", ".join(choices))
        return value

    return parse


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


@dataclass(frozen=True)
class OptionSpec:
    """One setting: how it is spelled in each source, how it is parsed, and its help text (shared by all sources)."""

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
        "in this process) or vllm (an OpenAI-compatible server).",
        _choice(BACKENDS),
        default="optimum",
        env="BENCHMARK_BACKEND",
        choices=BACKENDS,
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
        "Energy meter: auto picks nvml when a GPU is visible, else rapl when readable, else estimate.",
        _choice(METERS),
        default="auto",
        env="AIENERGYSCORE_METER",
        choices=METERS,
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
    # -- optimum backend options (issue 5) go here --
    # -- CI gate and export options (issue 6) go here --
    # -- AI Energy Score rules options (issue 7) go here --
    # -- remote DCGM meter options (issue 8) go here --
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


@dataclass(frozen=True)
class Settings:
    """Everything the plugin was told, after precedence and validation. Built once, never mutated."""

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
    # -- optimum backend fields (issue 5) --
    # -- CI gate and export fields (issue 6) --
    # -- AI Energy Score rules fields (issue 7) --
    # -- remote DCGM meter fields (issue 8) --
    disabled: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)

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
    try:
        return spec.parse(str(raw)), source
    except ValueError as err:
        raise SettingsError(spec.flag, source, raw, str(err)) from None


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
    for dest in ("energy_vllm_endpoint", "energy_dataset"):
        if values[dest] == "":
            values[dest] = None
    fields = {spec.dest: spec.attr for spec in OPTIONS}
    kwargs = {fields[dest]: value for dest, value in values.items()}
    return Settings(**kwargs, sources={fields[dest]: source for dest, source in sources.items()})
