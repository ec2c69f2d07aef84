"""The ``aienergyscore`` command (also ``python -m pytest_aienergyscore``).

Sub-commands: ``verify`` an archive against its manifest, ``doctor`` the meters of this machine, and ``report`` the
files of a session again from its ``records.jsonl`` (after a crash that stopped pytest before it could write them).
Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        print(f"aienergyscore {args.command}: {err}", file=sys.stderr)
        return 1
