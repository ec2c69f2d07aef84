"""The aienergyscore command (also: python -m pytest_aienergyscore): set up, verify, report, compare and label.

Sub-commands: ``verify`` an archive against its manifest, ``doctor`` the meters of this machine, ``protocol`` the
work each task does and where each value comes from, and ``report`` the
files of a session again from its ``records.jsonl`` (after a crash that stopped pytest before it could write them);
``run`` one benchmark with AI Energy Score's Docker command line, ``label`` a result as a PNG, ``merge`` the
results of several machines, ``html`` a session as one self-contained page, and ``setup`` the environment a
backend runs in (optimum-benchmark's, a CPU vLLM).
Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _verify(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.report.archive import verify_archive

    status = 0
    for archive in args.archives:
        result = verify_archive(Path(archive))
        for line in result.lines():
            print(line, file=sys.stdout if result.ok else sys.stderr)
        status |= 0 if result.ok else 1
    return status


def _doctor(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.cli.doctor import format_report, run_doctor

    report = run_doctor(gpu=not args.no_gpu)
    for line in format_report(report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"written: {args.json}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """Write a session's files from its records: what is there already is left alone (run it twice, it writes
    once), what an interrupted or killed writer left half done is written again. Torn records are skipped, each
    with a warning, and every intact one is written."""
    from pytest_aienergyscore.records.store import RECORDS_FILE, read_store
    from pytest_aienergyscore.report.files import write_session_files

    store = Path(args.records)
    if store.is_dir():
        store = store / RECORDS_FILE
    if not store.is_file():
        print(f"aienergyscore report: {store}: no such records file", file=sys.stderr)
        return 2
    records, skipped = read_store(store)
    for line in skipped:
        print(f"aienergyscore report: warning: {line}", file=sys.stderr)
    if not records:
        print(f"aienergyscore report: {store}: no intact record to write", file=sys.stderr)
        return 2
    out = (Path(args.output) if args.output else store.parent).absolute()
    result = write_session_files(records, out, _summary_meta(out, store))
    for run in result.runs:
        print(f"{run.record.nodeid}: {run.folder or run.error}")
    for note in result.notes:
        print(note)
    for error in result.errors:
        print(f"aienergyscore report: {error}", file=sys.stderr)
    print(f"{result.written} run folder(s) written, {len(records) - result.written} already there or failed: {out}")
    return 130 if result.interrupted else (1 if result.errors else 0)


def _summary_meta(out: Path, store: Path) -> dict[str, Any]:
    """The summary's header: the one the session wrote, when there is one (so a rebuild leaves it as it was)."""
    from pytest_aienergyscore.report.files import SUMMARY_JSON

    try:
        meta = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and "benchmarks" in meta:
        return {key: value for key, value in meta.items() if key != "benchmarks"}
    return {"session": out.name, "rebuilt_from": str(store)}


def _protocol(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.rules.protocol import PROTOCOLS, UnknownVariant, markdown_task_table, protocol_for
    from pytest_aienergyscore.rules.tasks import UnknownTask, get_task

    if args.markdown:
        print(markdown_task_table())
        return 0
    try:
        names = [get_task(args.task).name] if args.task else list(PROTOCOLS)
        protocols = [protocol_for(name, args.model_type, args.variant) for name in names]
    except (UnknownTask, UnknownVariant) as err:
        print(f"aienergyscore protocol: {err}", file=sys.stderr)
        return 2
    if args.json:
        every = [p.to_dict() for p in protocols]
        print(json.dumps(every[0] if args.task else every, indent=2))
        return 0
    for protocol in protocols:
        data = protocol.to_dict()
        sources = data.pop("sources")
        print(f"{protocol.task} ({protocol.variant}{'' if protocol.comparable else ', not comparable'})")
        for key, value in data.items():
            if isinstance(value, dict):
                for inner, item in value.items():
                    print(f"  {key}.{inner} = {item!r}  [{sources.get(f'{key}.{inner}', '')}]")
            elif key not in ("task", "variant", "comparable"):
                print(f"  {key} = {value!r}" + (f"  [{sources[key]}]" if key in sources else ""))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aienergyscore", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check archives against their SHA-256 manifest")
    verify.add_argument("archives", nargs="+", metavar="ZIP")
    verify.set_defaults(func=_verify)
    doctor = sub.add_parser("doctor", help="which energy meters work here, and GPU counter checks")
    doctor.add_argument("--json", metavar="FILE", help="also write the findings as JSON")
    doctor.add_argument("--no-gpu", action="store_true", help="skip the GPU load checks")
    doctor.set_defaults(func=_doctor)
    protocol = sub.add_parser(
        "protocol", help="the work each task's benchmark does: every parameter, its value and its upstream source"
    )
    protocol.add_argument("task", nargs="?", help="one task (default: every task)")
    protocol.add_argument("--variant", help="a named variant (t5, or one of ours, which is never comparable)")
    protocol.add_argument("--model-type", help="a model's config model_type (T5-family models run the T5 configs)")
    protocol.add_argument("--json", action="store_true", help="print JSON")
    protocol.add_argument("--markdown", action="store_true", help="print the README's task table")
    protocol.set_defaults(func=_protocol)
    report = sub.add_parser("report", help="write a session's files again from its records.jsonl")
    report.add_argument("records", metavar="RECORDS", help="records.jsonl or the session folder holding it")
    report.add_argument("-o", "--output", metavar="DIR", help="where to write (default: beside the records)")
    report.set_defaults(func=_report)
    _add_run_and_label(sub)
    _add_merge(sub)
    _add_html(sub)
    _add_compare(sub)
    _add_setup(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.cli.docker import run_from_args

    return run_from_args(args)


def _label(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.report.label import write_label
    from pytest_aienergyscore.report.label_data import read_run

    source = Path(args.source)
    if not source.exists():
        print(f"aienergyscore label: {source}: no such run folder or archive", file=sys.stderr)
        return 2
    try:
        summary, report = read_run(source)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        print(f"aienergyscore label: {source}: not a run folder or its archive ({err})", file=sys.stderr)
        return 2
    problem = write_label(Path(args.output), summary, report)
    if problem:
        print(f"aienergyscore label: {problem}", file=sys.stderr)
        return 1
    print(f"written: {args.output}")
    return 0


def _add_run_and_label(sub: Any) -> None:
    """``run`` (AI Energy Score's docker command line) and ``label`` (a result's energy label as a PNG)."""
    from pytest_aienergyscore.cli.docker import add_run_arguments

    run = sub.add_parser(
        "run",
        help="AI Energy Score's docker command line: --config-name TASK backend.model=M [key=value ...]",
        description="Run one AI Energy Score benchmark the way the Docker image does, through pytest.",
    )
    add_run_arguments(run)
    run.set_defaults(func=_run, accepts_extra=True)
    label = sub.add_parser("label", help="draw the energy label (PNG) of a run folder or its zip")
    label.add_argument("source", metavar="RUN_FOLDER_OR_ZIP")
    label.add_argument("-o", "--output", metavar="PNG", default="label.png", help="where to write (default label.png)")
    label.set_defaults(func=_label)


def _merge(args: argparse.Namespace) -> int:
    """The merged files of several machines or of a sweep's shards; the leaderboard in the terminal, and one warning
    line per shard that did not finish (the merge still succeeds: what the others measured stands)."""
    from pytest_aienergyscore.report.merge import write_merged

    problems: list[str] = []
    try:
        merged = write_merged([Path(d) for d in args.folders], Path(args.output), problems)
    except ValueError as err:
        print(f"aienergyscore merge: {err}", file=sys.stderr)
        return 2
    finally:
        for line in problems:  # a torn record or a damaged report costs only itself
            print(f"aienergyscore merge: warning: {line}", file=sys.stderr)
    for line in merged.leaderboard_lines:
        print(line)
    for line in merged.warnings:
        print(f"aienergyscore merge: warning: {line}", file=sys.stderr)
    for note in merged.notes:
        print(note)
    hosts = len({run.host for run in merged.runs})
    written = [merged.summary_json, merged.summary_csv, merged.leaderboard, merged.plot, merged.html]
    shown = ", ".join(str(path) for path in written if path is not None)
    print(f"merged {len(merged.runs)} benchmark(s) from {hosts} host(s): {shown}")
    return 0


def _add_compare(sub: Any) -> None:
    """``compare``: saved runs or results folders side by side (its code is in :mod:`.compare`)."""
    from pytest_aienergyscore.cli.compare import add_compare_command

    add_compare_command(sub)


def _add_merge(sub: Any) -> None:
    """``merge``: one summary from the results folders of several machines."""
    merge = sub.add_parser(
        "merge",
        help="combine results folders from several machines, or a sweep's shards, into one summary and leaderboard",
    )
    merge.add_argument(
        "folders",
        nargs="+",
        metavar="DIR",
        help="results folders, session folders, run folders, or a sweep's run id folder",
    )
    merge.add_argument("-o", "--output", metavar="OUT", default="merged", help="where to write (default merged/)")
    merge.set_defaults(func=_merge)


def _html(args: argparse.Namespace) -> int:
    """One self-contained HTML page of a session folder, drawn from its files as ``--energy-html`` draws it."""
    from pytest_aienergyscore.report.html import HTML_FILE, HtmlReportError, read_session, write_html

    folder = Path(args.results)
    if folder.is_file():  # records.jsonl itself
        folder = folder.parent
    if not folder.is_dir():
        print(f"aienergyscore html: {folder}: no such session folder", file=sys.stderr)
        return 2
    try:
        view, skipped = read_session(folder)
    except HtmlReportError as err:
        print(f"aienergyscore html: {err}", file=sys.stderr)
        return 2
    for line in skipped:  # a torn record costs only itself
        print(f"aienergyscore html: warning: {line}", file=sys.stderr)
    [written] = write_html(view, [Path(args.output) if args.output else folder / HTML_FILE])
    print(f"written: {written}")
    return 0


def _add_html(sub: Any) -> None:
    """``html``: a session's results as one HTML file that opens anywhere, offline."""
    html = sub.add_parser("html", help="write a session's results as one self-contained HTML file")
    html.add_argument("results", metavar="RESULTS", help="a session folder (results/<date-time>) or its records.jsonl")
    html.add_argument("-o", "--output", metavar="FILE", help="where to write (default: RESULTS/report.html)")
    html.set_defaults(func=_html)


def _setup(args: argparse.Namespace) -> int:
    from pytest_aienergyscore.backends.environments import RECIPES, default_path
    from pytest_aienergyscore.cli.environments import Setup, SetupFailed

    recipe = RECIPES[args.target]
    path = Path(args.path).expanduser().absolute() if args.path else default_path(recipe)
    prefix = f"aienergyscore setup {recipe.name}"

    def say(line: str) -> None:
        print(f"{prefix}: {line}", flush=True)

    setup = Setup(recipe, path, python=args.python, torch=args.torch, force=args.force, verbose=args.verbose, say=say)
    try:
        python = setup.run()
    except SetupFailed as err:
        print(f"{prefix}: {err}", file=sys.stderr)
        return 1
    print(f"{prefix}: python: {python}")
    return 0


def _add_setup(sub: Any) -> None:
    """``setup``: the virtual environments the plugin's backends run in, made once per machine in its cache."""
    import os

    from pytest_aienergyscore.backends.environments import DEFAULT_TORCH, RECIPES

    setup = sub.add_parser(
        "setup",
        help="make the environment a backend runs in (optimum: the default backend; vllm-cpu: a local CPU vLLM)",
        description="Make (or check) a backend's own virtual environment in the plugin's cache, idempotently: a second "
        "run with the same recipe checks and does nothing.",
    )
    setup.add_argument("target", choices=sorted(RECIPES), help="which environment")
    setup.add_argument("--path", metavar="DIR", help="where (default: $XDG_CACHE_HOME/pytest-aienergyscore/<name>-env)")
    setup.add_argument(
        "--python", default=sys.executable, metavar="PY", help="interpreter to base it on (default: this one)"
    )
    setup.add_argument(
        "--torch",
        default=os.environ.get("AIENERGYSCORE_TORCH") or DEFAULT_TORCH,
        metavar="SPEC",
        help=f"torch requirement installed first (default {DEFAULT_TORCH}, env AIENERGYSCORE_TORCH; on a GPU host the "
        "CUDA build you want)",
    )
    setup.add_argument("--force", action="store_true", help="run every step even when the environment is ready")
    setup.add_argument("--verbose", action="store_true", help="show pip's output")
    setup.set_defaults(func=_setup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):  # only `run` takes key=value overrides as they come
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        print(f"aienergyscore {args.command}: {err}", file=sys.stderr)
        return 1
