"""`aienergyscore run`: AI Energy Score's Docker command line translated into a pytest run, and the Dockerfile that
uses it (there is no Docker engine here: its COPY and RUN paths are checked against the repository)."""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.docker import (
    RunUsageError,
    benchmark_arguments,
    benchmark_source,
    build_plan,
    parse_value,
)
from pytest_aienergyscore.cli.main import main as cli_main
from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
TINY_TEXT = REPO / ".cache" / "tiny-models" / "text_generation"
STANDARD_FILES = {"GPU_ENERGY_WH.txt", "GPU_ENERGY_SUMMARY.json", "benchmark_report.json", "run.log", "label.png"}


# -- translation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("False", False), ("null", None), ("10", 10), ("0.5", 0.5), ("'10'", "10"), ("greedy", "greedy")],
)
def test_values_are_read_as_hydra_reads_them(raw: str, value: object) -> None:
    assert parse_value(raw) == value and type(parse_value(raw)) is type(value)


@pytest.mark.parametrize(
    ("config_name", "task"),
    [
        ("text_generation", "text_generation"),
        ("image_to_text", "image_captioning"),
        ("text_to_image", "image_generation"),
        ("question_answering", "question_answering"),
        ("automatic_speech_recognition", "automatic_speech_recognition"),
        ("asr", "automatic_speech_recognition"),
        ("reasoning", "reasoning"),
    ],
)
def test_optimum_benchmark_config_names_and_ours_are_accepted(config_name: str, task: str) -> None:
    assert build_plan(config_name, ["backend.model=org/m"]).task == task


@pytest.mark.parametrize("task", ["summarization", "question_answering", "text_classification", "text_generation"])
def test_the_t5_configs_run_their_task_with_the_t5_protocol(task: str) -> None:
    plan = build_plan(f"t5_{task}", ["backend.model=google-t5/t5-small"])
    assert (plan.task, plan.variant) == (task, "t5")
    assert benchmark_arguments(plan, "--config-name t5_" + task)["energy_star"]["variant"] == "t5"


def test_overrides_become_plugin_options_and_energy_star_arguments(tmp_path: Path) -> None:
    plan = build_plan(
        "text_generation",
        [
            "backend.model=org/model",
            "backend.processor=org/tokenizer",
            "scenario.num_samples=100",
            "scenario.dataset_name=me/prompts",
            "scenario.generate_kwargs.max_new_tokens=4",
            "+scenario.generate_kwargs.do_sample=false",
            "backend.device=cuda:1",
        ],
        output=str(tmp_path / "out"),
        plugin_values={"energy_warmup": "0", "energy_allow_multi_gpu": True},
    )
    assert (plan.task, plan.model, plan.processor, plan.output) == (
        "text_generation",
        "org/model",
        "org/tokenizer",
        tmp_path / "out",
    )
    assert plan.kwargs == {"max_new_tokens": 4, "do_sample": False}
    assert plan.options == [
        "--energy-warmup=0",
        "--energy-allow-multi-gpu",
        "--energy-samples=100",
        "--energy-dataset=me/prompts",
        "--energy-gpus=1",
    ]


def test_reasoning_switch_params_device_and_hydra_run_dir(tmp_path: Path) -> None:
    plan = build_plan(
        "text_generation",
        [
            "backend.model=org/m",
            "scenario.reasoning=True",
            "scenario.reasoning_params.reasoning_effort=high",
            "backend.device=cpu",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    assert plan.task == "reasoning" and plan.reasoning_params == {"reasoning_effort": "high"}
    assert plan.env == {"CUDA_VISIBLE_DEVICES": ""} and plan.output == tmp_path
    assert build_plan("reasoning", ["backend.model=m", "scenario.reasoning=false"]).task == "text_generation"
    assert build_plan("text_generation", ["backend.model=m"]).output == Path("results").resolve()


def test_the_generated_benchmark_calls_energy_star_with_the_translation() -> None:
    plan = build_plan(
        "text_to_image",
        ["backend.model=org/sd", "scenario.call_kwargs.num_inference_steps=2", "scenario.call_kwargs.height=64"],
    )
    tree = ast.parse(benchmark_source(plan))
    [test] = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert test.name == "test_image_generation"
    arguments = benchmark_arguments(plan, "--config-name text_to_image ...")
    named = {k: v for k, v in arguments["energy_star"].items() if k != "model"}
    assert named == {"task": "image_generation", "processor": None, "reasoning_params": None, "variant": None}
    assert arguments["kwargs"] == {"num_inference_steps": 2, "height": 64}


ERRORS = {
    "unknown config": (["--config-name", "text_telepathy", "backend.model=m"], "unknown config name 'text_telepathy'"),
    "no config": (["backend.model=m"], "--config-name is required"),
    "no equals": (["--config-name", "text_generation", "backend.model"], "malformed override 'backend.model'"),
    "empty key": (["--config-name", "text_generation", "backend.model=m", "=3"], "malformed override '=3'"),
    "deletion": (["--config-name", "text_generation", "backend.model=m", "~backend.processor"], "malformed override"),
    "unsupported": (
        ["--config-name", "text_generation", "backend.model=m", "backend.torch_dtype=float16", "launcher.numactl=1"],
        "unsupported override key(s): backend.torch_dtype, launcher.numactl; supported: backend.model",
    ),
    "no model": (["--config-name", "text_generation", "scenario.num_samples=3"], "backend.model=... is required"),
    "bad samples": (["--config-name", "asr", "backend.model=m", "scenario.num_samples=many"], "whole number >= 1"),
    "reasoning elsewhere": (
        ["--config-name", "image_to_text", "backend.model=m", "scenario.reasoning=true"],
        "scenario.reasoning applies to text generation, not to image_captioning",
    ),
    "params without reasoning": (
        ["--config-name", "text_generation", "backend.model=m", "scenario.reasoning_params.reasoning_effort=low"],
        "scenario.reasoning_params.* need scenario.reasoning=true",
    ),
    "bad device": (["--config-name", "text_generation", "backend.model=m", "backend.device=tpu"], "cpu, cuda or"),
    "unknown option": (["--config-name", "text_generation", "backend.model=m", "--turbo"], "unknown option --turbo"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_command_lines_are_one_line_errors(case: str, capsys, tmp_path: Path) -> None:
    argv, message = ERRORS[case]
    assert cli_main(["run", "--output", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aienergyscore run: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_build_plan_raises_the_same_errors() -> None:
    with pytest.raises(RunUsageError, match="unknown config name 'nope'; allowed: text_generation"):
        build_plan("nope", ["backend.model=m"])


def test_other_commands_still_refuse_unknown_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["verify", "a.zip", "backend.model=x", "--bogus"])
    assert info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


# -- end to end: the command people run, with the pytorch backend -----------------------------------------------------


def test_run_writes_the_run_folder_with_the_standard_files_and_a_label(tmp_path: Path, clean_env) -> None:
    Image = pytest.importorskip("PIL.Image")
    build_tiny_model("text_generation", TINY_TEXT)
    env = {**os.environ, "BENCHMARK_BACKEND": "pytorch", "AIENERGYSCORE_METER": "estimate", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest_aienergyscore",
        "run",
        "--config-name",
        "text_generation",
        f"backend.model={TINY_TEXT}",
        "scenario.num_samples=4",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout and "AI Energy Score" in done.stdout
    [session] = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    [folder] = [p for p in session.iterdir() if p.is_dir()]
    assert {p.name for p in folder.iterdir()} >= STANDARD_FILES
    assert folder.with_name(folder.name + ".zip").is_file() and (session / "energy_plot.png").is_file()
    summary = json.loads((folder / "GPU_ENERGY_SUMMARY.json").read_text())
    assert (summary["task"], summary["backend"], summary["queries"]) == ("text_generation", "pytorch", 4)
    assert summary["model_class"] == "A" and summary["stars"] in range(1, 6) and summary["stars_indicative"] is True
    with Image.open(folder / "label.png") as label:
        assert label.size == (520, 728)


# -- the Dockerfile -----------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copy_sources() -> list[str]:
    sources = []
    for instruction, args in dockerfile_instructions():
        if instruction != "COPY":
            continue
        parts = json.loads(args) if args.startswith("[") else shlex.split(args)
        parts = [p for p in parts if not p.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def test_every_copy_source_exists_and_is_not_dockerignored() -> None:
    sources = copy_sources()
    # what building the package reads: pyproject, the readme and licence files it names, the package itself
    assert {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "pytest_aienergyscore/"} <= set(sources)
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    for source in sources:
        assert (REPO / source).exists(), source
        assert source.rstrip("/").split("/")[0] not in ignored, source


def test_every_file_pyproject_names_for_the_build_is_copied_in() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {project["readme"], *project["license-files"]} <= set(copy_sources())


def test_the_image_runs_no_repository_script_only_commands_of_the_package() -> None:
    """The image is made as a user makes their machine: with the installed package's commands, which must parse."""
    from pytest_aienergyscore.cli.main import build_parser

    runs = [shlex.split(args) for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    assert not [token for tokens in runs for token in tokens if token.endswith((".sh", ".py"))]
    commands = [
        tokens[i + 1 : tokens.index("&&", i) if "&&" in tokens[i:] else len(tokens)]
        for tokens in runs
        for i, token in enumerate(tokens)
        if token == "aienergyscore"
    ]
    assert ["setup", "optimum", "--path", "/opt/venv-optimum"] in commands
    for command in commands:
        command = [token for token in command if token not in (">/dev/null",)]
        if command[-1] == "--help":
            continue
        assert build_parser().parse_known_args(command)[0].func, command


def test_the_entrypoint_is_the_run_command_writing_to_results() -> None:
    instructions = dict(dockerfile_instructions())
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint == ["aienergyscore", "run", "--output", "/results"]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\naienergyscore = "pytest_aienergyscore.cli.main:main"' in pyproject
    assert "BENCHMARK_BACKEND=optimum" in instructions["ENV"]
    assert instructions["FROM"] == "${BASE_IMAGE}" and "cuda" in instructions["ARG"]


def test_build_script_builds_this_dockerfile() -> None:
    build = REPO / "build.sh"
    assert os.access(build, os.X_OK)
    text = build.read_text()
    assert "docker build" in text and "-f Dockerfile" in text
    assert subprocess.run(["bash", "-n", str(build)], check=False).returncode == 0


def test_the_backend_reaches_the_containers_pytest_by_its_namespaced_spelling(tmp_path: Path) -> None:
    """A project in the container whose conftest owns ``--backend`` must still hand the backend to us."""
    plan = build_plan(
        "text_generation",
        ["backend.model=org/model"],
        output=str(tmp_path / "out"),
        plugin_values={"energy_backend": "pytorch"},
    )
    assert "--energy-backend=pytorch" in plan.options and not any(o.startswith("--backend") for o in plan.options)
