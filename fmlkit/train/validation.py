"""Validation during training: verification on a pair list (``val.pairs``).

The pair list is read by `fmlkit.eval.pair_sources.load_pairs`, so it may be a ``1,a,b`` CSV
or LFW's pairs.txt naming files under ``val.root``, or an InsightFace ``.bin`` whose images come
from the file itself. Its images are embedded with the current model in eval mode, flip-summed,
and scored by `fmlkit.eval.verification.score_pairs`: the numbers `fmlkit evaluate` reports.
Rank 0 runs it; the metrics (``val_<list stem>_accuracy``, ``_accuracy_std``, ``_threshold``,
``_val_at_far_1e-3``, ``_auc``, ``_eer``) join that step's metrics row.

It imports only modules of `fmlkit.eval` that import nothing from `fmlkit.train`
(`embedder`, `pair_sources`, `verification`, all light: numpy and the standard library), so
the imports sit at the top without a loop; `fmlkit.eval.embed`, which loads checkpoints
through `fmlkit.train.export`, is above `fmlkit.train` and is not imported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmlkit.data.loading.transforms import ImageTransform
from fmlkit.errors import InputError
from fmlkit.eval.embedder import Embedder
from fmlkit.eval.pair_sources import load_pairs, locate_files, pair_positions, unusable_error
from fmlkit.eval.verification import score_pairs


class PairValidation:
    """Verification on the pairs of ``pairs`` (CSV, LFW pairs.txt or .bin) with text lists'
    files under ``root``.

    Raises:
        InputError: a pair naming a file outside ``root`` or missing from it, fewer than 10
            pairs, or pairs of one kind only (all genuine or all imposter).
        FormatError: a malformed pair list.
    """

    def __init__(
        self, pairs: str | Path, root: str | Path, transform: ImageTransform, batch_size: int
    ) -> None:
        self.pairs = load_pairs(pairs)
        self.name = self.pairs.name
        self.transform, self.batch_size = transform, batch_size
        self.sources: list[bytes | Path]
        if self.pairs.images is not None:
            self.sources = list(self.pairs.images)
            self.first, self.second = self.pairs.first, self.pairs.second
        else:
            found = locate_files(self.pairs, root)
            problems = found.problems(Path(root), option="val.root")
            if problems:
                raise unusable_error(self.pairs, problems, 0, skip_hint=False)
            self.sources = list(found.paths.values())
            rows = {name: row for row, name in enumerate(found.paths)}
            self.first, self.second = pair_positions(self.pairs, rows)
        same = self.pairs.same
        if len(same) < 10 or same.all() or not same.any():
            raise InputError(
                f"{pairs}: {int(same.sum())} genuine and {int((~same).sum())} imposter pairs; "
                "validation's 10-fold protocol needs at least 10 pairs, of both kinds"
            )

    @torch.no_grad()
    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        def run(images: torch.Tensor) -> np.ndarray:
            return model(images.to(device)).float().cpu().numpy()

        was_training = model.training
        model.eval()
        try:
            embedder = Embedder(run, self.transform)
            vectors, failed = embedder.embed_images(self.sources, batch_size=self.batch_size)
        finally:
            model.train(was_training)
        if failed:
            at, why = next(iter(failed.items()))
            raise InputError(f"validation image {self._describe(at)} cannot be decoded: {why}")
        scores = score_pairs(vectors[self.first], vectors[self.second], self.pairs.same)
        prefix = f"val_{self.name}_"
        return {prefix + k: v for k, v in scores.result.items() if isinstance(v, float)}

    def _describe(self, at: int) -> str:
        source = self.sources[at]
        return str(source) if isinstance(source, Path) else f"{at} of {self.pairs.path}"
