"""What the live loop says besides its frames: notes on stderr, how many frames a file run will
see (the progress bar's total), and the stats line of a finished run."""

import sys

from lib.live.errors import UserError
from lib.live.options import Options
from lib.live.sources import Source
from lib.live.stats import Stats


def log(message: str) -> None:
    """A note on stderr; never fails the run."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal is gone (SIGHUP): the output is still finished
        pass


def no_display(opts: Options, others: bool, why: str) -> None:
    """Without a window: go on when frames go somewhere else (or --benchmark), else say what to pass."""
    if not others and not opts.benchmark:
        raise UserError(
            f"no display available ({why}); pass --output FILE (a video or a folder), --virtual-cam, "
            "or --benchmark, with --no-display"
        )
    log(f"note: no display available ({why}); running without a window")


def total_frames(source: Source, max_frames: int | None) -> int | None:
    """Frames the run will see: the video header's count or the folder's photos; None if unknown."""
    total = getattr(source, "expected", 0) or len(getattr(source, "paths", ())) or None
    return min(total, max_frames) if total and max_frames else total or max_frames


def report(opts: Options, stats: Stats) -> None:
    """The stats line of a finished run: on stdout for --benchmark (a program reads it), else on stderr."""
    dropped = f" (live source: {stats.dropped} frames dropped to keep up)" if stats.dropped else ""
    if opts.benchmark:
        try:
            print(stats.summary(), flush=True)
        except (OSError, ValueError):  # stdout is gone (SIGHUP, a closed pipe): the output is finished
            pass
        if dropped:
            log(dropped.strip())
    else:
        log(f"done: {stats.summary()}{dropped}")


def one_image(source: Source) -> bool:
    """A single photo: no progress bar, and a window holds it until the user quits."""
    return len(getattr(source, "paths", ())) == 1
