"""Reading gin configs with messages that name the file or binding at fault."""

import ast
import io
import re
import tokenize
from pathlib import Path

import gin
from gin import config_parser

from lib import ROOT
from lib.live.errors import UserError

# `include 'gin/lite.gin'` inside a recipe resolves from the project, whatever the working directory
gin.add_config_file_search_path(str(ROOT))


def read_config(path: Path) -> str:
    """A gin file's text. gin reads it as UTF-8 and, on another encoding's byte (latin-1's é), fails
    with a traceback that names neither the file nor the line: name both, and the byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise UserError(
            f"{path}, line {line}, column {column} (byte offset {error.start}): byte 0x{data[error.start]:02x} "
            "is not UTF-8; gin files are read as UTF-8: save the file as UTF-8"
        ) from None


def parse(gin_files: list[str], gin_params: list[str]) -> None:
    for path in gin_files:
        if not Path(path).is_file():
            raise UserError(f"--gin {path}: no such file (configs live in gin/)")
        check_includes(Path(path))  # every file gin will read, includes too, decoded first (read_config)
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_params)
    except (ValueError, KeyError, SyntaxError, TypeError, tokenize.TokenError) as error:  # unknown name, bad syntax
        where = _find_unreadable_binding(gin_files, gin_params)
        raise UserError(where or f"gin config: {_explain(str(error).strip().splitlines()[0])}") from None


def _find_unreadable_binding(gin_files: list[str], gin_params: list[str]) -> str | None:
    """gin's parser names neither the file nor the binding for two common slips: an unquoted string
    (`build_model.arch = Unet`) and an unclosed bracket or quote. Find the line and say so."""
    sources = [(f"--gin-param {param!r}", param) for param in gin_params]
    for path in gin_files:
        sources += [(f"{path}, line {n}", line) for n, line in enumerate(read_config(Path(path)).splitlines(), 1)]
    for where, line in sources:
        binding = re.fullmatch(r"\s*([\w.]+/)?([\w.]+)\s*=\s*(.*?)\s*(#[^'\"]*)?", line)
        if not binding:
            continue
        name, value, is_param = binding[2], binding[3], where.startswith("--gin-param")
        shown = "" if is_param else f" `{name} = {value}`"
        if re.fullmatch(r"[A-Za-z_]\w*", value) and value not in ("True", "False", "None"):
            return f"{where}:{shown} strings need quotes, e.g. {name} = '{value}'"
        if value[:1] in "'\"" and (len(value) < 2 or value[-1] != value[0]):
            return f"{where}:{shown} a quote is never closed"
        opened = sum(value.count(c) for c in "([{") - sum(value.count(c) for c in ")]}")
        if is_param and opened > 0:
            return f"{where}: a bracket is never closed"
        if is_param and value[:1] not in "@%":
            try:
                ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return f"{where}: {value!r} is not a value gin can read (numbers, 'strings', lists, tuples, dicts)"
    return None


def _include_target(name: str) -> Path | None:
    """Where gin finds an included file: as written (from the working directory), else from the project."""
    return next((p for p in (Path(name), ROOT / name) if p.is_file()), None)


def check_includes(path: Path, chain: tuple[str, ...] = ()) -> None:
    """gin reports a missing include without the file that asked for it, and recurses forever on
    an include loop: follow the includes first and name the file and line."""
    for number, line in enumerate(read_config(path).splitlines(), 1):
        found = re.fullmatch(r"\s*include\s+(['\"])(.*)\1\s*(#.*)?", line)
        if not found:
            continue
        where, target = f"{path}, line {number}", _include_target(found[2])
        if target is None:
            raise UserError(f"{where}: include '{found[2]}': no such file (looked in . and {ROOT})")
        if target.resolve() in {Path(c).resolve() for c in (*chain, path)}:
            loop = " -> ".join((*chain, str(path), found[2]))
            raise UserError(f"{where}: include '{found[2]}' makes a loop ({loop})")
        check_includes(target, (*chain, str(path)))


class _Placeholders(config_parser.ParserDelegate):
    """Keeps `@name` and `%NAME` as text: reading values must not need the configurables registered."""

    def configurable_reference(self, scoped_name, evaluate):
        return f"@{scoped_name}{'()' if evaluate else ''}"

    def macro(self, macro_name):
        return f"%{macro_name}"


def read_bindings(gin_files: list[str], gin_params: list[str], configurable: str) -> dict:
    """The values a recipe binds for one configurable, read from the files (includes followed) and
    bindings, later ones winning, without touching gin's global configuration: callable any number
    of times in one process, and beside a configuration already parsed."""
    values = {}

    def read(text: str, source: str) -> None:
        try:
            for statement in config_parser.ConfigParser(io.StringIO(text), _Placeholders()):
                if isinstance(statement, config_parser.IncludeStatement):
                    read(read_config(_include_target(statement.filename)), statement.filename)
                elif isinstance(statement, config_parser.BindingStatement) and not statement.scope:
                    if statement.selector.split(".")[-1] == configurable:
                        values[statement.arg_name] = statement.value
        except (SyntaxError, ValueError, AttributeError, tokenize.TokenError) as error:
            raise UserError(f"{source}: {str(error).strip().splitlines()[0]}") from None

    for path in gin_files:
        check_includes(Path(path))
        read(read_config(Path(path)), path)
    for param in gin_params:
        read(param, f"--gin-param {param!r}")
    return values


PASSED_BY_THE_PROGRAM = {"train.resume": "pass --resume RUN_DIR to train.py"}


def _explain(message: str) -> str:
    """gin's words for a binding of an argument the program always passes itself, made plain."""
    found = re.search(r"Configurable '(\w+)' has denylisted kwarg '(\w+)'", message)
    if not found:
        return message
    name = f"{found[1]}.{found[2]}"
    hint = PASSED_BY_THE_PROGRAM.get(name, "it is derived from the rest of the configuration")
    return f"{name} cannot be set in a gin file or --gin-param: the program passes it itself ({hint})"


def parse_for_resume(run_dir: str, gin_files: list[str], gin_params: list[str]) -> None:
    """The run's own operative config first, so a resumed run is the same run; flags may still override.

    The run folder itself reaches train() as its `resume` argument, never as a binding.
    """
    run_config = Path(run_dir) / "operative_config.gin"
    if not run_config.is_file():
        raise UserError(f"--resume {run_dir}: {run_config} is missing (did the run reach its first step?)")
    # runs written before `resume` stopped being a gin parameter recorded `train.resume = None`
    lines = [line for line in read_config(run_config).splitlines() if not line.startswith("train.resume ")]
    try:
        gin.parse_config(lines)
    except (ValueError, KeyError, SyntaxError, TypeError) as error:
        raise UserError(f"{run_config}: {str(error).strip().splitlines()[0]}") from None
    parse(gin_files, gin_params)
