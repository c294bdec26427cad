"""One exception type for problems the user can fix: a file, a flag, a config value; and how a
file's name is shown in a message whatever bytes it holds."""

import sys
from collections.abc import Callable
from contextlib import contextmanager


class UserError(Exception):
    """Bad input with a message that names the file or flag and what was expected.

    Entry scripts print the message alone (no traceback) and exit with status 2: the traceback
    of a library deep inside would only hide what the user has to change.
    """

    exit_code = 2


def shown(text) -> str:
    """A path or a text that names one, printable: bytes that are not UTF-8 (carried as surrogates)
    are written as \\xe9 instead of failing the print or crashing OpenCV's putText."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@contextmanager
def cli_errors():
    """UserError and Ctrl-C as an entry script says them: a message and an exit status, no traceback.

    Around main() (run_cli), and around the import that checks the training stack
    (lib.training.configurables raises a UserError when it is not installed)."""
    try:
        yield
    except UserError as error:
        # gin appends "In call to configurable ..." lines to exceptions it passes through
        message = str(error).split("\n  In call to configurable")[0]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry script's main(); turn UserError and Ctrl-C into a message and an exit status."""
    with cli_errors():
        main()
