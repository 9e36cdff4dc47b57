"""Command-line plumbing shared by the ``losslab`` commands (typer, no torch).

* :class:`OneLineErrorsGroup`: a usage error (an unknown option, a value that does not
  parse, a missing argument, an extra argument) is one line on stderr in the library's
  error format and exit status 2, like every other bad input, instead of a framed box.
* :class:`LazyGroup`: sub-commands whose modules are imported only when they run or
  show their own help, so ``losslab --help`` loads neither torch nor pandas.
* Flags show no value placeholder in the help (typer prints ``--dry-run <bool>``,
  which reads as if the flag took a value).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import typer
import typer.core

# typer vendors click; its exception classes are reached through BadParameter's ancestry
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_Abort: type[BaseException] = typer.Abort


def _flag_display_type(self: Any, ctx: Any) -> str | None:
    if getattr(self, "is_flag", False) and self.metavar is None:
        return None
    return _typer_display_type_rich(self, ctx)


# Flags take no value; typer's help shows their Python type as if they did.
_typer_display_type_rich = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]


def _where(ctx: Any, args: Sequence[str]) -> str:
    """``losslab <sub-commands>`` of the failing command (the program name varies:
    ``losslab``, ``python -m losslab.cli``, a test runner's)."""
    names: list[str] = []
    if ctx is not None:
        while ctx.parent is not None:
            names.append(ctx.info_name)
            ctx = ctx.parent
    else:  # an error raised without a context: the leading command words
        for arg in args:
            if arg.startswith("-"):
                break
            names.insert(0, arg)
    return " ".join(["losslab", *reversed(names)])


def _type_text(param: Any, ctx: Any) -> str:
    try:
        label = str(param.display_type(ctx)).strip("<>")
    except Exception:  # a parameter type without a display: say nothing specific
        return "a valid value"
    return {"int": "an integer", "float": "a number", "str": "a string"}.get(label, label)


def _raw_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The text given to an option on the command line (the last occurrence)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif name.startswith("--") and arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
    return found


def one_line_usage(err: Any, args: Sequence[str], ctx: Any = None) -> str:
    """A usage error of click as one line: ``<command>: <argument> expected <what>, got
    <value>``. ``args``: the command line as given (values are looked up in it);
    ``ctx``: the failing command's context when the error carries none."""
    ctx = getattr(err, "ctx", None) or ctx
    where = _where(ctx, args)
    name = type(err).__name__
    message = " ".join(str(err.format_message()).split())
    if name == "NoSuchOption":
        options = sorted(getattr(err, "possibilities", None) or [])
        hint = f" (did you mean {options[0]!r}?)" if len(options) == 1 else ""
        return (
            f"{where}: option expected one of the command's options (see --help){hint}, "
            f"got {err.option_name!r}"
        )
    param = getattr(err, "param", None)
    if name == "MissingParameter":
        if param is None:
            label = "argument"
        elif param.param_type_name == "option":
            label = param.opts[0]
        else:
            label = str(param.name).upper()
        return f"{where}: {label} expected a value, got none"
    if name in ("BadParameter", "BadOptionUsage") or param is not None:
        opts = list(getattr(param, "opts", []) or [])
        label = opts[0] if opts else getattr(err, "option_name", None) or "argument"
        if name == "BadOptionUsage" and "requires an argument" in message:
            return f"{where}: {label} expected a value after it, got none"
        raw = _raw_value(args, opts) if opts else None
        what = _type_text(param, ctx) if param is not None else "a valid value"
        got = repr(raw) if raw is not None else "an invalid value"
        reason = message.split(": ", 1)[-1]
        return f"{where}: {label} expected {what}, got {got} ({reason})"
    if message.startswith("Got unexpected extra argument"):
        found = re.search(r"\(([^()]*)\)$", message)
        extra = found.group(1) if found else message
        return (
            f"{where}: arguments expected only options and their values (flags such as "
            f"--dry-run take none), got extra {extra!r}"
        )
    if message.startswith("No such command"):
        cmd = message.split("'")[1] if "'" in message else message
        hint = message.split(". ", 1)[1] if ". " in message else ""
        hint = f" ({hint.rstrip('.')})" if hint else ""
        return f"{where}: command expected one of the listed commands{hint}, got {cmd!r}"
    if message.startswith("Missing command"):
        return f"{where}: command expected one of the listed commands (see --help), got none"
    return f"{where}: arguments expected valid usage (see --help), got {message!r}"


class OneLineErrorsGroup(typer.core.TyperGroup):
    """A typer group whose usage errors, anywhere below it, are one line on stderr
    with exit status 2 (see :func:`one_line_usage`)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except _UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":
                sys.exit(2)  # the group has printed its help
            typer.echo(one_line_usage(err, argv), err=True)
            sys.exit(2)
        except _ClickException as err:
            typer.echo(" ".join(str(err.format_message()).split()), err=True)  # type: ignore[attr-defined]
            sys.exit(getattr(err, "exit_code", 1))
        except _Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class LazyGroup(OneLineErrorsGroup):
    """A group with sub-commands imported on first use.

    ``lazy_commands`` maps a command name to ``(module, typer app attribute, command in
    that app or None for the whole app as a group, short help)``. The top-level help
    lists them from the short help alone; running one, or asking for its help, imports
    its module. A sub-command whose module cannot be imported (an extra that is not
    installed) is one line naming the extra and exit status 2.
    """

    lazy_commands: ClassVar[dict[str, tuple[str, str, str | None, str]]] = {}
    extras: ClassVar[dict[str, str]] = {}
    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [
            *super().list_commands(ctx),
            *(n for n in self.lazy_commands if n not in self.commands),
        ]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        module, attr, sub, short = self.lazy_commands[cmd_name]
        if self._listing:
            return typer.core.TyperCommand(name=cmd_name, help=short, short_help=short)
        try:
            app = getattr(importlib.import_module(module), attr)
        except ImportError as err:
            extra = self.extras.get(module, "bench")
            typer.echo(
                f"losslab {cmd_name}: the command expected the '{extra}' extra "
                f"(pip install 'losslab[{extra}]'), got {type(err).__name__}: {err}",
                err=True,
            )
            sys.exit(2)
        command = typer.main.get_command(app)
        if sub is not None:
            command = command.commands[sub]  # type: ignore[attr-defined]
        else:
            command.name = cmd_name
            command.help = command.help or short
        self.commands[cmd_name] = command
        return command
