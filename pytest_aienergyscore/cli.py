"""The ``aienergyscore`` command (also ``python -m pytest_aienergyscore``).

Sub-commands: ``verify`` an archive against its manifest, ``doctor`` the meters of this machine, and ``report`` the
files of a session again from its ``records.jsonl`` (after a crash that stopped pytest before it could write them);
``run`` one benchmark with AI Energy Score's Docker command line, and ``label`` a result as a PNG.
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
    from .report.archive import verify_archive

    status = 0
    for archive in args.archives:
        result = verify_archive(Path(archive))
        for line in result.lines():
            print(line, file=sys.stdout if result.ok else sys.stderr)
        status |= 0 if result.ok else 1
    return status


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import format_report, run_doctor

    report = run_doctor(gpu=not args.no_gpu)
    for line in format_report(report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"written: {args.json}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .records import load_records
    from .report.archive import build_archive
    from .report.files import summary_row, write_run_folder, write_session_summary

    store = Path(args.records)
    if store.is_dir():
        store = store / "records.jsonl"
    if not store.is_file():
        print(f"aienergyscore report: {store}: no such records file", file=sys.stderr)
        return 2
    try:
        records = load_records(store)
    except ValueError as err:
        print(f"aienergyscore report: {err}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else store.parent
    rows = []
    for record in records:
        folder = write_run_folder(record, out)
        archive = build_archive(folder)
        rows.append(summary_row(record, folder, archive))
        print(f"{record.nodeid}: {folder}")
    write_session_summary(out, rows, {"session": out.name, "rebuilt_from": str(store)})
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
    report = sub.add_parser("report", help="write a session's files again from its records.jsonl")
    report.add_argument("records", metavar="RECORDS", help="records.jsonl or the session folder holding it")
    report.add_argument("-o", "--output", metavar="DIR", help="where to write (default: beside the records)")
    report.set_defaults(func=_report)
    _add_run_and_label(sub)
    _add_merge(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .docker_cli import run_from_args

    return run_from_args(args)


def _label(args: argparse.Namespace) -> int:
    from .report.label import read_run, write_label

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
    from .docker_cli import add_run_arguments

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
    from .report.merge import write_merged_summary
    from .report.table import format_wh

    try:
        runs, json_path, csv_path = write_merged_summary([Path(d) for d in args.folders], Path(args.output))
    except ValueError as err:
        print(f"aienergyscore merge: {err}", file=sys.stderr)
        return 2
    for run in runs:
        r = run.record
        figure = format_wh(r.wh_per_1000_queries())
        print(f"{run.host}  {r.nodeid}  {r.headline_scope()}/{r.meter_name()}  {figure} Wh/1k queries")
    print(f"merged {len(runs)} benchmark(s) from {len({run.host for run in runs})} host(s): {json_path}, {csv_path}")
    return 0


def _add_merge(sub: Any) -> None:
    """``merge``: one summary from the results folders of several machines."""
    merge = sub.add_parser("merge", help="combine results folders from several machines into one summary")
    merge.add_argument("folders", nargs="+", metavar="DIR", help="results folders, session folders or run folders")
    merge.add_argument("-o", "--output", metavar="OUT", default="merged", help="where to write (default merged/)")
    merge.set_defaults(func=_merge)


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
