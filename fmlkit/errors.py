"""Errors a user can cause. The CLI turns each into one ``Error: …`` line and exit code 1
(`OptionError`: a usage error, exit code 2).

Library code raises these (never ``SystemExit`` or click exceptions); messages say what was
expected, what was found and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")  # an option name in an OptionError message


class FmlkitError(Exception):
    """Base class of every error fmlkit reports to a user."""


class InputError(FmlkitError):
    """An input path or argument is missing, of the wrong kind, or would be overwritten."""


class SchemaError(FmlkitError):
    """A table (CSV/Parquet) lacks required columns or has values of the wrong kind."""


class FormatError(FmlkitError):
    """A file is not in the format it claims to be (bad magic, truncated record, …)."""


class OutputError(FmlkitError):
    """An output could not be written: its disk is full, or a quota or file-size limit is
    reached. One written under a temporary name leaves nothing under its own name, and a
    previous version as it was; one appended to (training metrics) keeps what it held."""


class ConfigError(FmlkitError):
    """A configuration or pipeline file has unknown keys or invalid values."""


class BatchError(FmlkitError):
    """A training batch the loss cannot use: e.g. a pair loss given a label with one image
    (use the ``m_per_class`` sampler)."""


class PipelineError(FmlkitError):
    """A pipeline file is invalid (each problem named by its YAML path, e.g.
    ``stages.train.deps.config``), or one of its stages failed."""


class ClusterError(InputError):
    """A Dask cluster problem (``--cluster``): Dask not installed, a scheduler that does not
    answer, no workers, a path some worker does not see, a task that kills every worker that
    runs it."""


class OptionError(InputError):
    """A stage's options that do not fit together, or an option value out of range.

    The message is a template that names each option by its Python keyword in braces
    (``"{k} does not apply to {mode}"``); keyword arguments bind an option to the value the
    message speaks of (``mode="classes"``). ``str()`` reads the Python way, which is also the
    way of a pipeline YAML: ``k does not apply to mode='classes'``. `render` writes the names
    another way: the command line shows ``--k does not apply to --mode classes`` (a usage
    error, exit 2).

    Attributes:
        template: the message with ``{name}`` placeholders.
        settings: option name → the value the message names it with.
        options: the option names in the message, in order of first appearance.
    """

    def __init__(self, template: str, **settings: object) -> None:
        self.template = template
        self.settings = settings
        self.options = tuple(dict.fromkeys(_PLACEHOLDER.findall(template)))
        unused = set(settings) - set(self.options)
        assert not unused, f"settings {sorted(unused)} are not in the message {template!r}"
        super().__init__(self.render())

    def render(
        self,
        name: Callable[[str], str] = str,
        setting: Callable[[str, object], str] = lambda option, value: f"{option}={value!r}",
    ) -> str:
        """The message with each option written by ``name(option)``, or by
        ``setting(option, value)`` where the message binds it to a value."""

        def write(match: re.Match[str]) -> str:
            option = match.group(1)
            if option in self.settings:
                return setting(option, self.settings[option])
            return name(option)

        return _PLACEHOLDER.sub(write, self.template)
