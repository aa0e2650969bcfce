"""fmlkit: from a raw identity-labelled image collection to a trained, evaluated embedding model."""

from __future__ import annotations

__version__ = "0.1.0"

from fmlkit.errors import FmlkitError

__all__ = ["FmlkitError", "__version__"]
