"""The ``fmlkit`` command: one click group mounting the stage commands (`fmlkit.cli`) and the
pipeline's commands (`fmlkit.pipeline.commands`). It sits above both, so neither imports the
other's package back (docs/architecture.md)."""

from __future__ import annotations

import click

from fmlkit import __version__
from fmlkit.cli._common import CONTEXT_SETTINGS, FmlkitGroup, configure_logging
from fmlkit.cli.align import align
from fmlkit.cli.clean import clean
from fmlkit.cli.convert import convert, inspect
from fmlkit.cli.data import filter_, prepare, synth
from fmlkit.cli.evaluate import evaluate
from fmlkit.cli.split import pairs, split
from fmlkit.cli.train import embed, export, train
from fmlkit.pipeline.commands import artifacts, run, runs, status

__all__ = ["main"]


@click.group(cls=FmlkitGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="fmlkit")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only errors: no summary, no progress bars."
)
def main(verbose: int, quiet: bool) -> None:
    """fmlkit: from a raw identity-labelled image collection to a trained, evaluated
    embedding model.

    Stages chain through files: synth (→ align) → prepare → filter → split → convert → train →
    evaluate; `fmlkit run PIPELINE` runs them as a pipeline YAML declares, skipping unchanged ones.
    Run `fmlkit COMMAND --help` for each.
    """
    if verbose and quiet:
        raise click.UsageError("--verbose and --quiet exclude each other")
    configure_logging(verbose, quiet)
    from fmlkit.progress import set_progress

    set_progress(False if quiet else None)


for _command in (
    synth,
    align,
    prepare,
    filter_,
    clean,
    split,
    pairs,
    convert,
    inspect,
    train,
    export,
    embed,
    evaluate,
    run,
    status,
    artifacts,
    runs,
):
    main.add_command(_command)
