"""The submission archive: a zip of one run folder with a SHA-256 manifest inside, and its verification.

The manifest (``MANIFEST.sha256``, ``sha256sum`` format) lists every other file of the archive, so that
:func:`verify_archive` can say exactly which file changed, went missing, or was added after the fact.
"""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_aienergyscore.records.atomic import temporary, writing
from pytest_aienergyscore.report.safe_zip import (
    DEFAULT_LIMITS,
    DamagedMember,
    Limits,
    UnsafeArchive,
    checked_members,
    open_archive,
    read_small,
    sha256_member,
)

MANIFEST = "MANIFEST.sha256"
STORED_SUFFIXES = (".png", ".zip", ".gz", ".jpg")  # compressed already


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_archive(folder: Path, destination: Path | None = None, files: Mapping[str, bytes] | None = None) -> Path:
    """Zip ``folder`` as ``<folder>.zip`` with its files under ``<folder name>/`` and a manifest beside them.

    ``files`` (name -> bytes, as just written into the folder) spares reading them back. The zip is built under a
    temporary name and renamed once whole. Pictures are stored as they are (PNG is compressed already: deflating
    it again costs time and saves nothing); the rest is deflated.
    """
    destination = destination or folder.with_name(folder.name + ".zip")
    contents = dict(files) if files is not None else _read_folder(folder)
    contents.pop(MANIFEST, None)
    lines = []
    tmp = temporary(destination)
    with writing(destination, tmp):
        with zipfile.ZipFile(tmp, "w") as zf:
            for name in sorted(contents):
                arcname = f"{folder.name}/{name}"
                data = contents[name]
                lines.append(f"{sha256_bytes(data)}  {arcname}\n")
                zf.writestr(_member(arcname, folder / name), data)
            zf.writestr(_member(f"{folder.name}/{MANIFEST}", folder), "".join(lines))
        os.replace(tmp, destination)
    return destination


def ensure_archive(folder: Path, files: Mapping[str, bytes] | None = None) -> Path:
    """The folder's archive: the one already there (an archive only ever appears whole), else built now."""
    archive = folder.with_name(folder.name + ".zip")
    return archive if archive.is_file() else build_archive(folder, archive, files)


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _member(arcname: str, source: Path) -> zipfile.ZipInfo:
    """A zip entry dated like its file (so the same folder zips to the same bytes), deflated unless a picture."""
    try:
        stamp = time.localtime(source.stat().st_mtime)[:6]
    except OSError:
        stamp = time.localtime()[:6]
    info = zipfile.ZipInfo(arcname, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
    info.compress_type = zipfile.ZIP_STORED if arcname.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


@dataclass
class Verification:
    """What :func:`verify_archive` found; ``ok`` only when every listed file matches and nothing extra is there."""

    archive: Path
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.unlisted or self.error)

    def lines(self) -> list[str]:
        if self.error:
            return [f"{self.archive}: {self.error}"]
        out = [f"{self.archive}: changed file {name}" for name in self.changed]
        out += [f"{self.archive}: missing file {name}" for name in self.missing]
        out += [f"{self.archive}: file not in the manifest {name}" for name in self.unlisted]
        if not out:
            out.append(f"{self.archive}: OK, {self.checked} files match the manifest")
        return out


MANIFEST_LIMIT = 64 << 20  # a manifest line per file: far more than any run folder needs


def verify_archive(archive: Path, limits: Limits = DEFAULT_LIMITS) -> Verification:
    """Check an archive, perhaps received from someone else, against its manifest: every member streamed through
    SHA-256 (never read whole), after the whole archive passed :mod:`.safe_zip`'s checks (sizes, inflation ratio,
    duplicate or climbing names, links, encryption); what is refused is the one-line ``error``."""
    result = Verification(archive)
    try:
        with open_archive(archive) as zf:
            _verify_members(zf, checked_members(zf, limits), result)
    except UnsafeArchive as err:
        result.error = str(err)
    return result


def _verify_members(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], result: Verification) -> None:
    by_name = {info.filename: info for info in members}
    manifests = [name for name in by_name if name.rsplit("/", 1)[-1] == MANIFEST]
    if len(manifests) != 1:
        result.error = f"expected one {MANIFEST} in the archive, found {len(manifests)}"
        return
    try:
        raw = read_small(zf, by_name[manifests[0]], MANIFEST_LIMIT)
    except DamagedMember:
        result.changed.append(manifests[0])
        return
    expected = _manifest_lines(manifests[0], raw)
    for name, digest in expected.items():
        info = by_name.get(name)
        if info is None:
            result.missing.append(name)
            continue
        result.checked += 1
        try:
            if sha256_member(zf, info) != digest:
                result.changed.append(name)
        except DamagedMember:
            result.changed.append(name)
    result.unlisted = [name for name in by_name if name not in expected and name != manifests[0]]


def _manifest_lines(manifest: str, raw: bytes) -> dict[str, str]:
    """``digest  name`` per line: 64 hex digits, a printable name, each name once; UnsafeArchive otherwise."""
    expected: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        digest, sep, name = line.partition("  ")
        printable = name and not any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
        if not sep or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest) or not printable:
            raise UnsafeArchive(f"{manifest} has a malformed line: {line[:80]!r}")
        if name in expected:
            raise UnsafeArchive(f"{manifest} lists {name!r} twice")
        expected[name] = digest
    return expected
