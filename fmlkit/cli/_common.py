"""What every fmlkit command shares: the error-reporting group, report printing, logging,
option callbacks and choices."""

from __future__ import annotations

import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from fmlkit.errors import FmlkitError, OptionError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# The exit status when stdout's reader has gone: that of a command killed by SIGPIPE (128 + 13).
BROKEN_PIPE_EXIT = 141


class FmlkitGroup(click.Group):
    """A group that reports library and OS errors as one ``Error:`` line (exit 1), and options
    that do not fit together (`OptionError`) as a usage error naming the flags (exit 2).

    A closed stdout (``fmlkit status | head -1``) is no error: the command stops without a
    word, with the exit status of a command killed by SIGPIPE (`BROKEN_PIPE_EXIT`).
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:  # ``fmlkit --help`` and ``--version`` print while the arguments are parsed
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            if not stdout_reader_gone():
                raise
            exit_on_broken_pipe()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OptionError as e:
            raise self._usage_error(ctx, e) from e
        except FmlkitError as e:
            raise click.ClickException(str(e)) from e
        except OSError as e:
            if isinstance(e, BrokenPipeError) and stdout_reader_gone():
                exit_on_broken_pipe()
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}") from e

    def _usage_error(self, ctx: click.Context, error: OptionError) -> click.UsageError:
        """``error`` as the subcommand's usage error, its options written as that command's
        flags (the subcommand's context is gone by now: a fresh one prints its usage line)."""
        name = ctx.invoked_subcommand
        command = self.get_command(ctx, name) if name else None
        if command is None:
            return click.UsageError(str(error), ctx)
        sub = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
        return click.UsageError(flag_message(error, command), sub)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) nobody reads any more, rather than some other
    pipe of the command's (a worker's, a subprocess's) having broken. True where poll is
    missing (not Unix): a broken pipe is then most likely stdout."""
    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no real stdout (a test runner's buffer)
        return False
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in events)


def exit_on_broken_pipe() -> NoReturn:
    """Stop quietly, stdout's reader having gone: point stdout at the null device (so the
    interpreter's last flush of what is still buffered cannot fail again) and exit with
    `BROKEN_PIPE_EXIT`."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    raise click.exceptions.Exit(BROKEN_PIPE_EXIT)


def find_option(command: click.Command, name: str) -> click.Option | None:
    """The option of ``command`` that a library keyword ``name`` stands for: the option of that
    parameter name, else the one whose flag is ``--name`` (``--split`` stored as
    ``split_value``); None if there is none."""
    options = [p for p in command.params if isinstance(p, click.Option)]
    flag = "--" + name.replace("_", "-")
    return next((p for p in options if p.name == name), None) or next(
        (p for p in options if flag in p.opts), None
    )


def flag_message(error: OptionError, command: click.Command) -> str:
    """An `OptionError`'s message with its options written as ``command``'s flags: ``--k``,
    ``--mode classes``, ``--no-flip-sum``."""

    def flag(name: str) -> str:
        option = find_option(command, name)
        return name if option is None else _long_flag(option.opts)

    def setting(name: str, value: object) -> str:
        option = find_option(command, name)
        if option is not None and option.is_bool_flag and isinstance(value, bool):
            flags = option.opts if value else option.secondary_opts
            if flags:
                return _long_flag(flags)
        return f"{flag(name)} {value}"

    return error.render(flag, setting)


def _long_flag(flags: Sequence[str]) -> str:
    return next((f for f in flags if f.startswith("--")), flags[0])


def echo_report(text: str) -> None:
    """Print a command's result on stdout, unless the user asked for --quiet."""
    ctx = click.get_current_context()
    if not (ctx.find_root().params.get("quiet")):
        click.echo(text)


cluster_option = click.option(
    "--cluster",
    metavar="ADDRESS",
    default=None,
    help="Run the per-image work on a Dask cluster: tcp://host:8786 (a running scheduler) or "
    "local:N (N local worker processes); paths must be on a filesystem every worker sees.",
)  # prepare, align, embed and convert (docs/cluster.md)


def refuse_workers_with_cluster(cluster: str | None) -> None:
    """With ``--cluster``, a ``--workers`` given too (on the command line or as a pipeline
    param, not by default) is refused: the cluster's workers do the work, and a value that
    would be silently unused misleads."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    if cluster is not None and ctx.get_parameter_source("workers") not in (
        None,
        ParameterSource.DEFAULT,
    ):
        raise OptionError(
            "{workers} sets this machine's processes; with {cluster} the cluster's workers do "
            "the work: drop one of them",
            cluster=cluster,
        )


def configure_logging(verbose: int, quiet: bool) -> None:
    """Send library logs to stderr: warnings by default, -v info, -vv debug, -q errors only."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    fmt = "%(levelname)s %(name)s: %(message)s" if verbose >= 2 else "%(levelname)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def comma_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """Split a comma-separated option value ("jpg,png") into its items."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def hash_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from fmlkit.data.formats.hashing import parse_hash_names

    try:
        return parse_hash_names(value.split(","))
    except FmlkitError as e:
        raise click.BadParameter(str(e)) from e


def table_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A .csv or .parquet path (the table format follows the suffix)."""
    from fmlkit.data.formats.table import info_format

    if value is not None:
        try:
            info_format(value)
        except FmlkitError as e:
            raise click.BadParameter(str(e)) from e
    return value


def table_output_option(help: str) -> Callable[[F], F]:
    """``-o/--output``: a required .csv or .parquet table to write."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        callback=table_path,
        help=help,
    )


def table_argument(name: str) -> Callable[[F], F]:
    """A .csv or .parquet table to read, as a positional argument."""
    return click.argument(
        name, type=click.Path(dir_okay=False, path_type=Path), callback=table_path
    )


OVERWRITE_HELP = (
    "Replace outputs that exist already (each atomically); without it an existing output is "
    "an error. A pipeline's outputs (links into its artifact store) are never replaced."
)
overwrite_option = click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)


def check_outputs(overwrite: bool, **outputs: Path | None) -> None:
    """`fmlkit.io.check_output` for each output given (keyword: what it is, ``_`` for a
    space), before the command does any work."""
    from fmlkit.io import check_output

    for what, path in outputs.items():
        if path is not None:
            check_output(path, overwrite=overwrite, what=what.replace("_", " "))


def selection_options(fold_help: str, split_help: str) -> Callable[[F], F]:
    """``--fold K`` and ``--split NAME``: select the rows of one fold or split of a table (the
    ``fold`` and ``split`` columns `fmlkit split` writes), as `pairs` does; the split is
    passed as ``split_value``."""
    from fmlkit.columns import SPLIT_VALUES

    def add(command: F) -> F:
        command = click.option(
            "--split", "split_value", type=click.Choice(SPLIT_VALUES), help=split_help
        )(command)
        return click.option("--fold", type=int, help=fold_help)(command)

    return add


def seed_option(
    help: str = "Integer seed: the same input and seed give byte-identical output.",
) -> Callable[[F], F]:
    """``--seed``: an integer ≥ 0, default 0 (anything else is a usage error)."""
    return click.option(
        "--seed", type=click.IntRange(min=0), default=0, show_default=True, help=help
    )
