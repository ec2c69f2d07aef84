"""Reading zip archives that came from someone else, with bounded work and one-line errors.

Why: ``aienergyscore verify`` and ``aienergyscore label`` exist for archives received from others, so an archive may
be built to hurt: a member that inflates a thousandfold (a 2 MB zip once took 4.2 GB of memory when read whole), the
same name twice (a reader takes the last copy while a checker looked at the first), names that climb out of the
folder (``..``, absolute), symlinks, encryption or a compression method nobody here reads. Every check happens on
the central directory before any data is inflated, and members are then read in pieces: memory stays flat whatever
the archive holds. Anything refused is :class:`UnsafeArchive`, a ValueError whose message is one line.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PIECE = 1 << 20
READABLE_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflated",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


class UnsafeArchive(ValueError):
    """An archive, or one of its members, that is refused; the message says which and why, in one line."""


class DamagedMember(ValueError):
    """A member whose stored data does not decode or fails its CRC: a changed file, not a refused archive."""


@dataclass(frozen=True)
class Limits:
    """What one archive may hold. A member above ``ratio_floor`` bytes may inflate at most ``ratio`` times: run
    folders are JSON, logs and PNGs, which compress 2 to 50 times; a zip bomb compresses about a thousand times."""

    member_bytes: int = 1 << 30
    total_bytes: int = 4 << 30
    members: int = 100_000
    ratio: float = 200.0
    ratio_floor: int = 1 << 20


DEFAULT_LIMITS = Limits()


def open_archive(path: Path) -> zipfile.ZipFile:
    """The archive opened for reading, or UnsafeArchive saying why it cannot be (missing, not a zip...)."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise UnsafeArchive("no such file") from None
    except IsADirectoryError:
        raise UnsafeArchive("a folder, not a zip archive") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
        raise UnsafeArchive(f"not a readable zip archive ({_one_line(err)})") from None


def checked_members(zf: zipfile.ZipFile, limits: Limits = DEFAULT_LIMITS) -> list[zipfile.ZipInfo]:
    """Every file member (folders left out), once the whole central directory passed every check."""
    infos = zf.infolist()
    if len(infos) > limits.members:
        raise UnsafeArchive(f"{len(infos)} members, more than the {limits.members} allowed")
    twice = sorted(name for name, count in Counter(info.filename for info in infos).items() if count > 1)
    if twice:
        raise UnsafeArchive(f"the name {twice[0]!r} appears more than once (a reader would take only one copy)")
    total = 0
    for info in infos:
        _check_name(info.filename)
        _check_kind(info, limits)
        total += info.file_size
    if total > limits.total_bytes:
        raise UnsafeArchive(f"its members hold {total} bytes in all, more than the {limits.total_bytes} allowed")
    return [info for info in infos if not info.is_dir()]


def _check_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"member {name!r} has an absolute or non-portable name (allowed: relative names with /)")
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} climbs out of the archive's folder with '..'")
    if any(ord(ch) < 32 for ch in name):
        raise UnsafeArchive(f"member {name!r} has control characters in its name")


def _check_kind(info: zipfile.ZipInfo, limits: Limits) -> None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"member {name!r} is a symbolic link; an archive of a run folder holds plain files only")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"member {name!r} is encrypted; archives are checked unencrypted")
    if info.compress_type not in READABLE_METHODS:
        allowed = ", ".join(READABLE_METHODS.values())
        raise UnsafeArchive(f"member {name!r} uses compression method {info.compress_type}; readable: {allowed}")
    if info.file_size > limits.member_bytes:
        raise UnsafeArchive(
            f"member {name!r} holds {info.file_size} bytes, more than the {limits.member_bytes} allowed"
        )
    if info.file_size > limits.ratio_floor and info.file_size > limits.ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        raise UnsafeArchive(
            f"member {name!r} inflates {ratio:.0f} times ({info.compress_size} -> {info.file_size} bytes), more than "
            f"the {limits.ratio:g} allowed"
        )


def pieces(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A checked member's data in pieces of at most ``PIECE`` bytes; zipfile never yields more than the size the
    central directory declares, so the checks above bound the work. DamagedMember when its data is damaged."""
    try:
        with zf.open(info) as member:
            while piece := member.read(PIECE):
                yield piece
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise DamagedMember(f"member {info.filename!r} is damaged ({_one_line(err)})") from None
    except (NotImplementedError, RuntimeError) as err:  # a method or encryption that got past the directory
        raise UnsafeArchive(f"member {info.filename!r} cannot be read ({_one_line(err)})") from None


def sha256_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    digest = hashlib.sha256()
    for piece in pieces(zf, info):
        digest.update(piece)
    return digest.hexdigest()


def read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member that is read whole (a manifest, a JSON summary): refused above ``limit`` bytes."""
    if info.file_size > limit:
        raise UnsafeArchive(f"member {info.filename!r} holds {info.file_size} bytes, more than the {limit} expected")
    return b"".join(pieces(zf, info))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] if text else type(err).__name__
