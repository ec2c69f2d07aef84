"""The submission archive: a zip of one run folder with a SHA-256 manifest inside, and its verification.

The manifest (``MANIFEST.sha256``, ``sha256sum`` format) lists every other file of the archive, so that
:func:`verify_archive` can say exactly which file changed, went missing, or was added after the fact.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "MANIFEST.sha256"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_archive(folder: Path, destination: Path | None = None) -> Path:
    """Zip ``folder`` as ``<folder>.zip`` with its files under ``<folder name>/`` and a manifest beside them."""
    destination = destination or folder.with_name(folder.name + ".zip")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = []
    tmp = destination.with_name(destination.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            arcname = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            data = path.read_bytes()
            lines.append(f"{sha256_bytes(data)}  {arcname}\n")
            zf.writestr(arcname, data)
        zf.writestr(f"{folder.name}/{MANIFEST}", "".join(lines))
    tmp.replace(destination)
    return destination


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


def _read_member(zf: zipfile.ZipFile, name: str) -> bytes | None:
    """A member's bytes, or None when its stored data is damaged (bad CRC or undecodable)."""
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError):
        return None


def verify_archive(archive: Path) -> Verification:
    result = Verification(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        result.error = "no such file"
        return result
    except (zipfile.BadZipFile, OSError) as err:
        result.error = f"not a readable zip archive ({err})"
        return result
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        manifests = [n for n in names if n.rsplit("/", 1)[-1] == MANIFEST]
        if len(manifests) != 1:
            result.error = f"expected one {MANIFEST} in the archive, found {len(manifests)}"
            return result
        raw = _read_member(zf, manifests[0])
        if raw is None:
            result.changed.append(manifests[0])
            return result
        expected: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").splitlines():
            digest, sep, name = line.partition("  ")
            if not sep or len(digest) != 64:
                result.error = f"{manifests[0]} has a malformed line: {line[:80]!r}"
                return result
            expected[name] = digest
        for name, digest in expected.items():
            if name not in names:
                result.missing.append(name)
                continue
            data = _read_member(zf, name)
            result.checked += 1
            if data is None or sha256_bytes(data) != digest:
                result.changed.append(name)
        result.unlisted = [n for n in names if n not in expected and n != manifests[0]]
    return result
