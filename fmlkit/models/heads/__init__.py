"""The training heads: margin softmax heads, the pair/episode losses and PartialFC.

``create_head(name, embedding_size, num_classes, **kwargs)`` builds any head by name,
``list_heads()`` lists the names; docs/heads.md gives every formula and default.

Modules: `base` (the registry, the shared angle helpers, softmax/normface/cosface/arcface),
`margin`, `adaptive`, `elastic` (the other margin heads), `pair_losses` (triplet, contrastive,
prototypical, GE2E …) and `partial_fc` (class centres sharded over GPUs). Each concrete module
imports `base` and registers its heads; this package imports them all, so the registry is
complete whichever name a user imports. No module here imports the package itself.
"""

from __future__ import annotations

from fmlkit.models.heads import adaptive, elastic, margin, pair_losses  # noqa: F401 (registers)
from fmlkit.models.heads.base import (
    HEADS,
    ClassificationHead,
    CosineHead,
    arc_target,
    create_head,
    list_heads,
    shifted_cos,
)
from fmlkit.models.heads.partial_fc import PartialFC, create_partial_fc

__all__ = [
    "HEADS",
    "ClassificationHead",
    "CosineHead",
    "PartialFC",
    "arc_target",
    "create_head",
    "create_partial_fc",
    "list_heads",
    "shifted_cos",
]
