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
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aienergyscore.config.options import OPTIONS, OptionSpec
from pytest_aienergyscore.rules.protocol import variants
from pytest_aienergyscore.rules.tasks import ALIASES, TASKS, UnknownTask, get_task, with_reasoning

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
    variant: str | None = None  # "t5" for optimum-benchmark's t5_* configs
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


# optimum-benchmark's t5_* configs: the same tasks run as text2text generation with a prefix (protocol variant "t5").
T5_CONFIGS = {f"t5_{task}": task for task in TASKS if "t5" in variants(task)}


def config_names() -> list[str]:
    """Every accepted ``--config-name``: our task names and optimum-benchmark's / the Hub's names for them."""
    return [*TASKS, *sorted(name for name in ALIASES if name not in TASKS), *T5_CONFIGS]


def resolve_config_name(name: str | None) -> tuple[str, str | None]:
    """(task, protocol variant) for a config name."""
    if not name:
        raise RunUsageError(f"--config-name is required; one of: {', '.join(config_names())}")
    if name in T5_CONFIGS:
        return T5_CONFIGS[name], "t5"
    try:
        return get_task(name).name, None
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


# Generation and call parameters that are counts: a bad one is refused here, not after the model has loaded.
_COUNTS = {"max_new_tokens": 1, "min_new_tokens": 0, "num_beams": 1, "num_return_sequences": 1}
_COUNTS.update(num_inference_steps=1, num_images_per_prompt=1, height=1, width=1)


def _energy_star_arguments() -> set[str]:
    """energy_star's own argument names, from its signature: a parameter of the same name would collide with them."""
    import inspect

    from pytest_aienergyscore.session.energy_star import EnergyStar

    parameters = inspect.signature(EnergyStar.__call__).parameters.values()
    return {p.name for p in parameters if p.kind is not p.VAR_KEYWORD and p.name != "self"}


def _generation_value(key: str, name: str, raw: str) -> Any:
    """One generation or call parameter as energy_star gets it; RunUsageError for a count that is no whole number
    >= its minimum, a do_sample that is not true/false, or a name energy_star takes for itself."""
    if name in _energy_star_arguments():
        raise RunUsageError(f"{key}: {name!r} is an argument of energy_star itself, not a generation parameter")
    value = parse_value(raw)
    minimum = _COUNTS.get(name)
    if minimum is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise RunUsageError(f"{key}={raw}: expected a whole number >= {minimum}")
    if name == "do_sample" and not isinstance(value, bool):
        raise RunUsageError(f"{key}={raw}: expected true or false")
    return value


def _reasoning_task(task: str, raw: str) -> str:
    """``scenario.reasoning`` switches text generation to its reasoning variant (and back)."""
    value = parse_value(raw)
    if not isinstance(value, bool):
        raise RunUsageError(f"scenario.reasoning={raw}: expected true or false")
    switched = with_reasoning(task, value)
    if switched is None:
        raise RunUsageError(f"scenario.reasoning applies to text generation, not to {task}")
    return switched


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
    """The plugin options given to ``run`` itself, spelled for pytest: the namespaced spelling where there is one, so
    that a project whose conftest owns ``--backend`` still hands ours to us."""
    options = []
    for spec in passthrough_specs():
        value = values.get(spec.dest)
        if value is None:
            continue
        flag = spec.twin or spec.flag
        if spec.is_flag:
            options.append(flag)
            continue
        options.extend(f"{flag}={item}" for item in (value if isinstance(value, list) else [value]))
    return options


def build_plan(
    config_name: str | None,
    tokens: Sequence[str],
    output: str | None = None,
    plugin_values: Mapping[str, Any] | None = None,
) -> RunPlan:
    """Translate the command line into a :class:`RunPlan`; RunUsageError for anything it cannot honour."""
    task, variant = resolve_config_name(config_name)
    overrides = parse_overrides(tokens)
    model = overrides.get("backend.model", "").strip()
    if not model:
        raise RunUsageError("backend.model=... is required (a Hub id or a local folder)")
    plan = RunPlan(task=task, model=model, processor=overrides.get("backend.processor") or None, variant=variant)
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
            name = key.rsplit(".", 1)[-1]
            plan.kwargs[name] = _generation_value(key, name, raw)
        elif key.startswith("scenario.reasoning_params."):
            plan.reasoning_params[key.rsplit(".", 1)[-1]] = parse_value(raw)
    if plan.reasoning_params and plan.task != "reasoning":
        raise RunUsageError("scenario.reasoning_params.* need scenario.reasoning=true (or --config-name reasoning)")
    chosen = output or overrides.get("hydra.run.dir") or DEFAULT_OUTPUT
    plan.output = Path(chosen).expanduser().resolve()
    return plan


ARGUMENTS_FILE = "energy_star_arguments.json"

# The generated benchmark holds no value from the command line: every argument is read from the JSON file beside it,
# so that an override with a quote, a backslash or a newline in it is data and can never become code. Only the test's
# name is filled in, and that is a task name from this package's own table.
BENCHMARK_SOURCE = '''"""Written by `aienergyscore run`: its command line and arguments are in {arguments}."""

import json
import pathlib

import pytest

RUN = json.loads(pathlib.Path(__file__).with_name({arguments!r}).read_text(encoding="utf-8"))


@pytest.mark.parametrize("model", [RUN["energy_star"]["model"]])
def test_{task}(energy_star, model):
    energy_star(**{{**RUN["energy_star"], "model": model}}, **RUN["kwargs"])
'''


def benchmark_arguments(plan: RunPlan, command: str) -> dict[str, Any]:
    """What the generated benchmark passes to energy_star, as data: written to ``ARGUMENTS_FILE`` beside it."""
    return {
        "command": command,
        "energy_star": {
            "task": plan.task,
            "model": plan.model,
            "processor": plan.processor,
            "reasoning_params": plan.reasoning_params or None,
            "variant": plan.variant,
        },
        "kwargs": plan.kwargs,
    }


def benchmark_source(plan: RunPlan) -> str:
    """The generated benchmark file: one test calling energy_star with the arguments in ``ARGUMENTS_FILE``."""
    if plan.task not in TASKS or not plan.task.isidentifier():  # the one value written into code: ours, not the user's
        raise RunUsageError(f"unknown task {plan.task!r}")
    return BENCHMARK_SOURCE.format(task=plan.task, arguments=ARGUMENTS_FILE)


def write_benchmark(plan: RunPlan, command: str, folder: Path) -> Path:
    """The benchmark file and its arguments file in ``folder``; the test file's path."""
    (folder / ARGUMENTS_FILE).write_text(json.dumps(benchmark_arguments(plan, command), indent=2), encoding="utf-8")
    test_file = folder / f"test_{plan.task}.py"
    test_file.write_text(benchmark_source(plan), encoding="utf-8")
    return test_file


# -- running ------------------------------------------------------------------------------------------------------


def _plugin_loading() -> tuple[list[str], dict[str, str]]:
    """Load the plugin in the child pytest: by its entry point when installed, else by module from this checkout."""
    from importlib.metadata import entry_points

    if any(ep.value == "pytest_aienergyscore.plugin" for ep in entry_points(group="pytest11")):
        return [], {}
    root = str(Path(__file__).resolve().parents[2])
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
        write_benchmark(plan, command, folder)
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
