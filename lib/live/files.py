"""All-or-nothing writes, for every file the project writes (model files, run folders, json, the
webcam's videos and images): a file or folder is written under a temporary name beside it and
renamed when complete, so a full disk, a read-only folder or a kill never leaves half of one, and
never replaces a good one with a broken one. A failed write says which path and why in one line,
in the words of `cause`; a folder is checked for writing before any expensive work.

Only regular files and folders are ever replaced. A character device (/dev/null, /dev/full, a
terminal) or a named pipe is written into, as `>` in a shell does: renaming a file over it would
turn the device into a file (as root, /dev/null itself). A block device or a socket is refused.
Two runs writing the same new file: the second to finish does not replace the first's (publish).
"""

import errno
import functools
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from lib.live.errors import UserError

CAUSES = {
    errno.ENOSPC: "no space left on the disk",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EDQUOT: "disk quota exceeded",
    errno.EPERM: "operation not permitted",
}
CHAR, FIFO = "a character device", "a named pipe (FIFO)"  # written into
KINDS = (
    (stat.S_ISCHR, CHAR),
    (stat.S_ISFIFO, FIFO),
    (stat.S_ISBLK, "a block device (a disk)"),
    (stat.S_ISSOCK, "a socket"),
)
# a hard link cannot be made on this file system: publish falls back to a checked rename
NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES}


class WriteFailed(UserError):
    """A write that could not complete; what was there before is kept."""


class OutputTaken(UserError):
    """The target appeared while the run wrote it (another run?): kept, and the result saved beside it."""

    exit_code = 1


def cause(error: Exception) -> str:
    """Why a write failed, in one wording everywhere: 'no space left on the disk (ENOSPC)'."""
    code = getattr(error, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    words = CAUSES.get(code) or getattr(error, "strerror", None) or str(error) or type(error).__name__
    return words + (f" ({name})" if name else "")


def special(path: str | Path) -> str | None:
    """What `path` is when it is there but neither a regular file nor a folder ('a character device'),
    else None. Links are followed: /dev/stdout is the pipe or terminal it points to."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return next((kind for test, kind in KINDS if test(mode)), None)


def streams_into(path: str | Path) -> bool:
    """A device or pipe that takes what is written into it (nothing there to replace)."""
    return special(path) in (CHAR, FIFO)


def temp_sibling(path: Path) -> Path:
    """`.<name>.tmp<pid>-<random><suffix>` beside `path`: same folder (so the rename is atomic), same
    suffix (so loaders and encoders that go by the suffix treat it as the file it becomes), and a
    name of its own, so two programs writing the same file never write into one temporary."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _named(flag: str | None, path: Path) -> str:
    return f"{flag} {path}" if flag else str(path)


def _could_not(flag: str | None, path: Path, why: str) -> str:
    """'--json out.json: could not write it: <why>' with a flag to name, else 'could not write out.json: <why>'."""
    return f"{flag} {path}: could not write it: {why}" if flag else f"could not write {path}: {why}"


def write_atomic(
    path: str | Path,
    write: Callable[[Path], object],
    check: Callable[[Path], object] | None = None,
    *,
    overwrite: bool = True,
    flag: str | None = None,
):
    """write(tmp) fills a temporary file (or folder) beside `path`; check(tmp), if given, reads it back;
    then it replaces `path` (only a file or folder; without `overwrite`, see publish). On any failure
    the temporary is removed and `path` is as it was. A device or pipe at `path` gets the bytes
    written into it instead. An OSError becomes WriteFailed naming `path` and the cause; other
    errors pass through. Returns check's result, or write's without a check."""
    path = Path(path)
    kind = special(path)
    if kind is not None:
        return _write_into(path, kind, write, check, flag)
    tmp = temp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result = write(tmp)
        result = check(tmp) if check else result
        if overwrite and path.is_dir() and tmp.is_dir():  # a folder (smp export) cannot be renamed over a folder
            remove(path)
        publish(tmp, path, overwrite, flag or "writing")
        return result
    except OSError as error:
        raise WriteFailed(_could_not(flag, path, f"{cause(error)}; nothing was changed there")) from None
    finally:
        remove(tmp)


def _write_into(path: Path, kind: str, write, check, flag: str | None):
    """A device or pipe: made in a private temporary folder (the writer may need to seek), then its
    bytes copied in. The device's own folder (/dev) never gets a file."""
    if kind not in (CHAR, FIFO):
        raise UserError(f"{_named(flag, path)}: {kind}; expected a file name")
    with tempfile.TemporaryDirectory(prefix="person-seg-") as folder:
        tmp = Path(folder) / (path.name or "out")
        try:
            result = write(tmp)
            result = check(tmp) if check else result
        except OSError as error:
            raise WriteFailed(_could_not(flag, path, cause(error))) from None
        if tmp.is_dir():
            raise UserError(f"{_named(flag, path)}: {kind}; this output is a folder of files, which cannot go into it")
        try:
            with open(tmp, "rb") as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target)
        except OSError as error:
            into = f"could not write into this {kind.removeprefix('a ')}: {cause(error)}"
            raise WriteFailed(f"{_named(flag, path)}: {into}") from None
    return result


def write_text(path: str | Path, text: str, flag: str | None = None) -> None:
    """Text (json, a config) to `path`, all or nothing; into a device or pipe (/dev/stdout, a FIFO)
    as it is. The one text writer every entry script uses for its outputs (--json)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), flag=flag)


# The picture formats a message offers, most common first: those of them this OpenCV build encodes
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _encode(suffix: str, image: np.ndarray, params: Sequence[int] = ()) -> np.ndarray | None:
    """cv2.imencode's bytes, or None where OpenCV has no encoder for the suffix (or not for this image)."""
    try:
        ok, data = cv2.imencode(suffix, image, list(params))
    except cv2.error:  # no encoder for this suffix
        return None
    return data if ok else None


@functools.cache
def picture_suffixes() -> tuple[str, ...]:
    """Those of PICTURE_SUFFIXES this OpenCV build can write an 8-bit colour picture as."""
    probe = np.zeros((64, 64, 3), np.uint8)
    return tuple(s for s in PICTURE_SUFFIXES if _encode(s, probe) is not None)


def _cannot_encode(path: Path, what: str, flag: str | None) -> UserError:
    """'--picture out.gif: OpenCV cannot encode a picture as .gif (expected .png, .jpg, ...)'."""
    suffix = path.suffix or "a file without a suffix"
    expected = ", ".join(picture_suffixes())
    return UserError(f"{_named(flag, path)}: OpenCV cannot encode {what} as {suffix} (expected {expected}, ...)")


def check_picture_name(path: str | Path, flag: str | None = None) -> Path:
    """Refuse, before the work that makes it, a picture's name whose suffix OpenCV cannot encode (.gif
    on some builds, .xyz, none): the one line write_image would say at the end."""
    path = Path(path)
    if _encode(path.suffix, np.zeros((64, 64, 3), np.uint8)) is None:
        raise _cannot_encode(path, "a picture", flag)
    return path


def write_image(path: str | Path, image: np.ndarray, params: Sequence[int] = (), flag: str | None = None) -> None:
    """cv2.imwrite(path, image, params) for any file name, all or nothing: the format is the suffix's.

    Encoded by OpenCV and written by Python, as lib.live.preprocess.read_image reads: OpenCV 5
    crashes the process (SIGSEGV) on a name that is not valid UTF-8. UserError when OpenCV has no
    encoder for the suffix (or not for this image); WriteFailed (write_atomic) when the disk refuses."""
    data = _encode(Path(path).suffix, image, params)
    if data is None:
        raise _cannot_encode(Path(path), f"a {image.shape[1]}x{image.shape[0]} image", flag)
    write_atomic(path, lambda tmp: tmp.write_bytes(data.tobytes()), flag=flag)


def publish(tmp: Path, path: Path, overwrite: bool, flag: str = "--output") -> Path:
    """Move the finished `tmp` to `path`. With `overwrite` a file or folder there is replaced (never a
    device). Without it nothing there is replaced, even one that appeared while this run wrote (a
    second run writing the same new output): the result is kept beside it (name-2.ext) and
    OutputTaken says where. Returns where the result went."""
    if overwrite and not special(path):
        os.replace(tmp, path)
        return path
    try:
        _no_replace(tmp, path)
        return path
    except FileExistsError:
        pass
    for number in range(2, 1000):
        kept = path.with_name(f"{path.stem}-{number}{path.suffix}")
        try:
            _no_replace(tmp, kept)
        except FileExistsError:
            continue
        raise OutputTaken(
            f"{flag} {path} appeared while this run was writing it (another run writing the same file?); "
            f"it was left as it is, and this run's result was kept as {kept}"
        )
    raise OutputTaken(f"{flag} {path} appeared while this run was writing it; this run's result is {tmp}")


def _no_replace(tmp: Path, path: Path) -> None:
    """Rename, or FileExistsError when anything is at `path`: atomic for files (a hard link fails
    when the name exists), a checked rename for folders and file systems without hard links."""
    if not tmp.is_dir():
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as error:
            if error.errno not in NO_LINKS:
                raise
        else:
            tmp.unlink()
            return
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", str(path))
    try:
        os.rename(tmp, path)
    except OSError as error:  # a folder or file made in between: a folder is never renamed over another
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        raise


@contextmanager
def opencv_name(path: str | Path):
    """A name OpenCV can open `path` by, for as long as the block runs (open the file inside it).

    OpenCV 5 crashes the process (SIGSEGV) on a file name that is not valid UTF-8 (b'caf\\xe9.avi' on
    Linux, where names are bytes). Such a file gets an ASCII alias for the moment OpenCV opens it: a
    symbolic link with the same suffix (OpenCV picks the container by it) in a private temporary
    folder. UserError where no link can be made."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    suffix = Path(path).suffix if Path(path).suffix.isascii() else ""
    with tempfile.TemporaryDirectory(prefix="person-seg-") as folder:
        alias = Path(folder) / f"file{suffix}"
        try:
            os.symlink(os.path.abspath(path), alias)
        except OSError as error:
            raise UserError(
                f"{path}: the name is not valid UTF-8 and OpenCV cannot open it ({cause(error)}); rename it"
            ) from None
        yield str(alias)


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
    writable, and (unless `overwrite`) not there already. A character device or a named pipe
    passes as it is (it is written into, nothing is replaced); a block device or socket is refused."""
    path = Path(path)
    kind = special(path)
    if kind in (CHAR, FIFO):
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {path}: {kind} this user cannot write to")
        return path
    if kind is not None:
        raise UserError(f"{flag} {path}: {kind}; expected a file name")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{flag} {path}: exists already; pass --overwrite to replace it")
    check_writable(path.parent, flag, named=path)
    return path
