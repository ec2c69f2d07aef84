"""``aienergyscore run``: AI Energy Score's Docker command line, run through this plugin.

People who benchmark for the leaderboard know one command::

    docker run --gpus all --shm-size 1g IMAGE --config-name text_generation \\
        backend.model=org/model backend.processor=org/model scenario.num_samples=100

This module keeps that command line (Hydra-style ``key=value`` overrides of optimum-benchmark's energy_star configs)
and translates it into a pytest run of a generated one-test benchmark file that calls the ``energy_star`` fixture, so
the result has every file, star and label a pytest session gives. The image's entrypoint is ``aienergyscore run
--output /results``; outside the image the same command works as is. ``BENCHMARK_BACKEND`` and ``VLLM_ENDPOINT`` are
read by the plugin as usual, and any of the plugin's own options (``--energy-warmup 0``...) may be added.

Unknown config names, malformed overrides and keys this translation does not support are one-line errors naming
what is allowed: an override silently dropped would produce a result that looks like the protocol but is not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import OPTIONS, OptionSpec
from .tasks import ALIASES, TASKS, UnknownTask, get_task

DEFAULT_OUTPUT = "results"
EXACT_KEYS = (
    "backend.model",
    "backend.processor",
    "backend.device",
    "backend.device_ids",
    "scenario.num_samples",
    "scenario.dataset_name",
    "scenario.reasoning",
    "hydra.run.dir",
)
PREFIX_KEYS = ("scenario.generate_kwargs.", "scenario.call_kwargs.", "scenario.reasoning_params.")
# Options that `run` sets itself (--output) or that would make the run pointless (--no-energy).
_NOT_PASSED = ("energy_output", "energy_disable")


class RunUsageError(ValueError):
    """A command line that cannot be translated, with what is allowed, in one line."""


@dataclass
class RunPlan:
    """The translated command: which benchmark to write, and the pytest options and environment to run it with."""

    task: str
    model: str
    processor: str | None = None
    output: Path = Path(DEFAULT_OUTPUT)
    kwargs: dict[str, Any] = field(default_factory=dict)
    reasoning_params: dict[str, Any] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


# -- parsing ------------------------------------------------------------------------------------------------------


def passthrough_specs() -> list[OptionSpec]:
    """The plugin options ``run`` accepts and hands on to pytest."""
    return [spec for spec in OPTIONS if spec.dest not in _NOT_PASSED]


def _metavar(spec: OptionSpec) -> str | None:
    return spec.metavar or ("{" + ",".join(spec.choices) + "}" if spec.choices else None)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` sub-command's own options; ``key=value`` overrides are taken as they come (see cli.main)."""
    parser.add_argument("--config-name", metavar="TASK", help="optimum-benchmark config name or task name")
    parser.add_argument(
        "--output", metavar="DIR", help=f"where results go (default {DEFAULT_OUTPUT}/; /results in the image)"
    )
    for spec in passthrough_specs():
        if spec.is_flag:
            parser.add_argument(spec.flag, dest=spec.dest, action="store_true", default=None, help=spec.help)
            continue
        optional: dict[str, Any] = {"nargs": "?", "const": spec.const} if spec.const is not None else {}
        action = "append" if spec.multiple else "store"
        parser.add_argument(
            spec.flag, dest=spec.dest, action=action, default=None, metavar=_metavar(spec), help=spec.help, **optional
        )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides such as backend.model=org/name")


def config_names() -> list[str]:
    """Every accepted ``--config-name``: our task names and optimum-benchmark's / the Hub's names for them."""
    return [*TASKS, *sorted(name for name in ALIASES if name not in TASKS)]


def resolve_config_name(name: str | None) -> str:
    if not name:
        raise RunUsageError(f"--config-name is required; one of: {', '.join(config_names())}")
    try:
        return get_task(name).name
    except UnknownTask:
        raise RunUsageError(f"unknown config name {name!r}; allowed: {', '.join(config_names())}") from None


def parse_value(raw: str) -> Any:
    """A Hydra-style scalar: true/false, null, integers, floats, quoted or bare strings."""
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def split_override(token: str) -> tuple[str, str]:
    """``key=value`` (a leading ``+``, Hydra's "add", is accepted) into its key and raw value."""
    if token.startswith("-"):
        raise RunUsageError(f"unknown option {token}; see aienergyscore run --help")
    key, sep, value = token.removeprefix("+").partition("=")
    key = key.strip()
    if not sep or not key or any(ch.isspace() for ch in key) or key.endswith("."):
        raise RunUsageError(f"malformed override {token!r}: expected key=value, e.g. backend.model=org/name")
    return key, value.strip()


def parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """Overrides by key, in order, the last of a repeated key winning (as in Hydra)."""
    found: dict[str, str] = {}
    for token in tokens:
        key, value = split_override(token)
        found[key] = value
    unsupported = [key for key in found if key not in EXACT_KEYS and not key.startswith(PREFIX_KEYS)]
    if unsupported:
        supported = ", ".join([*EXACT_KEYS, *(prefix + "*" for prefix in PREFIX_KEYS)])
        raise RunUsageError(f"unsupported override key(s): {', '.join(unsupported)}; supported: {supported}")
    return found


# -- translating --------------------------------------------------------------------------------------------------


def _positive_int(key: str, raw: str) -> int:
    value = parse_value(raw)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunUsageError(f"{key}={raw}: expected a whole number >= 1")
    return value


def _reasoning_task(task: str, raw: str) -> str:
    """``scenario.reasoning`` switches text generation to its reasoning variant (and back)."""
    value = parse_value(raw)
    if not isinstance(value, bool):
        raise RunUsageError(f"scenario.reasoning={raw}: expected true or false")
    if task not in ("text_generation", "reasoning"):
        raise RunUsageError(f"scenario.reasoning applies to text generation, not to {task}")
    return "reasoning" if value else "text_generation"


def _device_options(key: str, raw: str) -> tuple[list[str], dict[str, str]]:
    """backend.device (cpu, cuda, cuda:N) and backend.device_ids (0 or 0,1) as plugin options and environment."""
    if key == "backend.device_ids":
        return [f"--energy-gpus={raw}"], {}
    device = raw.strip().lower()
    if device == "cpu":
        return [], {"CUDA_VISIBLE_DEVICES": ""}
    if device == "cuda":
        return [], {}
    if device.startswith("cuda:") and device[5:].isdigit():
        return [f"--energy-gpus={device[5:]}"], {}
    raise RunUsageError(f"backend.device={raw}: expected cpu, cuda or cuda:N")


def _plugin_options(values: Mapping[str, Any]) -> list[str]:
    """The plugin options given to ``run`` itself, spelled for pytest."""
    options = []
    for spec in passthrough_specs():
        value = values.get(spec.dest)
        if value is None:
            continue
        if spec.is_flag:
            options.append(spec.flag)
            continue
        options.extend(f"{spec.flag}={item}" for item in (value if isinstance(value, list) else [value]))
    return options


def build_plan(
    config_name: str | None,
    tokens: Sequence[str],
    output: str | None = None,
    plugin_values: Mapping[str, Any] | None = None,
) -> RunPlan:
    """Translate the command line into a :class:`RunPlan`; RunUsageError for anything it cannot honour."""
    task = resolve_config_name(config_name)
    overrides = parse_overrides(tokens)
    model = overrides.get("backend.model", "").strip()
    if not model:
        raise RunUsageError("backend.model=... is required (a Hub id or a local folder)")
    plan = RunPlan(task=task, model=model, processor=overrides.get("backend.processor") or None)
    plan.options = _plugin_options(plugin_values or {})
    for key, raw in overrides.items():
        if key == "scenario.num_samples":
            plan.options.append(f"--energy-samples={_positive_int(key, raw)}")
        elif key == "scenario.dataset_name":
            plan.options.append(f"--energy-dataset={raw}")
        elif key == "scenario.reasoning":
            plan.task = _reasoning_task(plan.task, raw)
        elif key in ("backend.device", "backend.device_ids"):
            options, env = _device_options(key, raw)
            plan.options.extend(options)
            plan.env.update(env)
        elif key.startswith(("scenario.generate_kwargs.", "scenario.call_kwargs.")):
            plan.kwargs[key.rsplit(".", 1)[-1]] = parse_value(raw)
        elif key.startswith("scenario.reasoning_params."):
            plan.reasoning_params[key.rsplit(".", 1)[-1]] = parse_value(raw)
    if plan.reasoning_params and plan.task != "reasoning":
        raise RunUsageError("scenario.reasoning_params.* need scenario.reasoning=true (or --config-name reasoning)")
    chosen = output or overrides.get("hydra.run.dir") or DEFAULT_OUTPUT
    plan.output = Path(chosen).expanduser().resolve()
    return plan


def benchmark_source(plan: RunPlan, command: str) -> str:
    """The generated benchmark file: one test calling energy_star with the translated arguments."""
    reasoning = repr(plan.reasoning_params) if plan.reasoning_params else "None"
    return f'''"""Written by `aienergyscore run` for: {command.replace('"', "'")}"""

import pytest


@pytest.mark.parametrize("model", [{plan.model!r}])
def test_{plan.task}(energy_star, model):
    energy_star(
        task={plan.task!r},
        model=model,
        processor={plan.processor!r},
        reasoning_params={reasoning},
        **{plan.kwargs!r},
    )
'''


# -- running ------------------------------------------------------------------------------------------------------


def _plugin_loading() -> tuple[list[str], dict[str, str]]:
    """Load the plugin in the child pytest: by its entry point when installed, else by module from this checkout."""
    from importlib.metadata import entry_points

    if any(ep.value == "pytest_aienergyscore.plugin" for ep in entry_points(group="pytest11")):
        return [], {}
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return ["-p", "pytest_aienergyscore.plugin"], {"PYTHONPATH": path}


def pytest_command(plan: RunPlan, folder: Path) -> tuple[list[str], dict[str, str]]:
    """The child pytest's argv and the environment changes it runs with."""
    plugin, env = _plugin_loading()
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(folder / f"test_{plan.task}.py"),
        "-c",
        str(folder / "pytest.ini"),
        "--rootdir",
        str(folder),
        "-p",
        "no:cacheprovider",
        "-rfEs",
        *plugin,
        f"--energy-output={plan.output}",
        *plan.options,
    ]
    return argv, {**env, **plan.env}


def execute(plan: RunPlan, command: str) -> int:
    """Write the benchmark file in a scratch folder and run pytest on it; pytest's exit status is ours."""
    plan.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aienergyscore-run-") as scratch:
        folder = Path(scratch)
        (folder / f"test_{plan.task}.py").write_text(benchmark_source(plan, command), encoding="utf-8")
        (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        argv, env = pytest_command(plan, folder)
        print(f"aienergyscore run: {plan.task} of {plan.model} -> {plan.output}", flush=True)
        return subprocess.call(argv, env={**os.environ, **env})


def run_from_args(args: argparse.Namespace) -> int:
    """Entry for ``aienergyscore run`` (cli.py): translate, then run; usage errors are one line and exit 2."""
    tokens = [*(args.overrides or ()), *(getattr(args, "extra", None) or ())]
    values = {spec.dest: getattr(args, spec.dest, None) for spec in passthrough_specs()}
    try:
        plan = build_plan(args.config_name, tokens, args.output, values)
    except RunUsageError as err:
        print(f"aienergyscore run: {err}", file=sys.stderr)
        return 2
    command = " ".join(["--config-name", str(args.config_name), *tokens])
    return execute(plan, command)
