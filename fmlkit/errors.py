"""Errors a user can cause. The CLI turns each into one ``Error: …`` line and exit code 1.

Library code raises these (never ``SystemExit`` or click exceptions); messages say what was
expected, what was found and how to fix it.
"""

from __future__ import annotations


class FmlkitError(Exception):
    """Base class of every error fmlkit reports to a user."""


class InputError(FmlkitError):
    """An input path or argument is missing, of the wrong kind, or would be overwritten."""


class SchemaError(FmlkitError):
    """A table (CSV/Parquet) lacks required columns or has values of the wrong kind."""


class FormatError(FmlkitError):
    """A file is not in the format it claims to be (bad magic, truncated record, …)."""


class ConfigError(FmlkitError):
    """A configuration or pipeline file has unknown keys or invalid values."""


class BatchError(FmlkitError):
    """A training batch the loss cannot use: e.g. a pair loss given a label with one image
    (use the ``m_per_class`` sampler)."""


class PipelineError(FmlkitError):
    """A pipeline file is invalid (each problem named by its YAML path, e.g.
    ``stages.train.deps.config``), or one of its stages failed."""
