"""All-or-nothing writes, for every file the project writes (model files, run folders, json, the
webcam's videos and images): a file or folder is written under a temporary name beside it and
renamed when complete, so a full disk, a read-only folder or a kill never leaves half of one, and
never replaces a good one with a broken one. A failed write says which path and why in one line,
in the words of `cause`; a folder is checked for writing before any expensive work."""

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lib.live.errors import UserError

CAUSES = {
    errno.ENOSPC: "no space left on the disk",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EDQUOT: "disk quota exceeded",
    errno.EPERM: "operation not permitted",
}


class WriteFailed(UserError):
    """A write that could not complete; what was there before is kept."""


def cause(error: Exception) -> str:
    """Why a write failed, in one wording everywhere: 'no space left on the disk (ENOSPC)'."""
    code = getattr(error, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    words = CAUSES.get(code) or getattr(error, "strerror", None) or str(error) or type(error).__name__
    return words + (f" ({name})" if name else "")


def temp_sibling(path: Path) -> Path:
    """`.<name>.tmp<suffix>` beside `path`: same folder (so the rename is atomic), same suffix (so
    loaders and encoders that go by the suffix treat it as the file it becomes)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: str | Path, write: Callable[[Path], object], check: Callable[[Path], object] | None = None):
    """write(tmp) fills a temporary file (or folder) beside `path`; check(tmp), if given, reads it back;
    then it replaces `path`. On any failure the temporary is removed and `path` is as it was.
    An OSError becomes WriteFailed naming `path` and the cause; other errors pass through.
    Returns check's result, or write's without a check."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove(tmp)
        result = write(tmp)
        result = check(tmp) if check else result
        if path.is_dir() and tmp.is_dir():  # a folder (smp export) cannot be renamed over a folder
            remove(path)
        os.replace(tmp, path)
        return result
    except OSError as error:
        raise WriteFailed(f"could not write {path}: {cause(error)}; nothing was changed there") from None
    finally:
        remove(tmp)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def check_writable(folder: str | Path, flag: str, named: str | Path | None = None) -> None:
    """Refuse, before any expensive work, a folder that cannot be written (read-only, no permission,
    a file in the way). Nothing is made: a folder not there yet is judged by the nearest one that
    is. os.access is not enough (root, read-only mounts), so a real file is made there and removed.
    `named`: what the message names after the flag (the output file in it), default the folder."""
    folder = Path(folder)
    named = folder if named is None else named
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{flag} {named}: {existing} is a file; expected a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-"):
            pass
    except OSError as error:
        raise UserError(f"{flag} {named}: cannot write there: {cause(error)}") from None


def check_output_file(path: str | Path, flag: str, overwrite: bool = True) -> Path:
    """An output file's path, checked before the work that fills it: not a folder, its folder
    writable, and (unless `overwrite`) not there already."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path}: exists already; pass --overwrite to replace it")
    check_writable(path.parent, flag, named=path)
    return path
