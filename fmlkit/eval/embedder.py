"""`Embedder`: a model that turns images into embeddings, ready for any caller.

A leaf of `fmlkit.eval`: it imports nothing from the training package, so the validation
during training and `fmlkit evaluate` share it without an import loop, while
`fmlkit.eval.embed`, which loads checkpoints through the training package, sits above both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: `fmlkit evaluate --embeddings` needs none
    import torch

    from fmlkit.data.loading.transforms import ImageTransform


@dataclass(frozen=True)
class Embedder:
    """A model ready to embed images.

    Attributes:
        run: a batch of normalised images (B, 3, S, S) → embeddings (B, E) as float32 numpy.
        transform: decoded PIL image → normalised tensor, as the model was trained.
    """

    run: Callable[[torch.Tensor], np.ndarray]
    transform: ImageTransform

    def __call__(self, images: torch.Tensor, *, flip_sum: bool = True) -> np.ndarray:
        """Embeddings of a batch: emb(x) + emb(flip(x)) with ``flip_sum``, else emb(x)."""
        return self.run(images) + self.run(images.flip(3)) if flip_sum else self.run(images)

    def embed_images(
        self, sources: Sequence[bytes | Path], *, flip_sum: bool = True, batch_size: int = 64
    ) -> tuple[np.ndarray, dict[int, str]]:
        """Embed encoded images (bytes) or image files (paths), in order.

        Returns:
            The (len(sources), E) float32 embeddings, and the positions of the sources that
            could not be read or decoded with the reason; their rows are zero.
        """
        from fmlkit.progress import progress_counter

        with progress_counter(total=len(sources), desc="embed", unit="img") as advance:
            chunks, failed = self._embed_batches(sources, flip_sum, batch_size, advance)
        width = chunks[0][1].shape[1] if chunks else 0
        out = np.zeros((len(sources), width), np.float32)
        for positions, vectors in chunks:
            out[positions] = vectors
        return out, failed

    def _embed_batches(
        self,
        sources: Sequence[bytes | Path],
        flip_sum: bool,
        batch_size: int,
        advance: Callable[[int], None],
    ) -> tuple[list[tuple[list[int], np.ndarray]], dict[int, str]]:
        """The embeddings of each batch of decodable ``sources`` with their positions, and
        the reasons of those that are not; ``advance`` is told of each batch done."""
        import torch

        from fmlkit.data.formats.images import decode_image

        chunks: list[tuple[list[int], np.ndarray]] = []
        failed: dict[int, str] = {}
        for start in range(0, len(sources), batch_size):
            tensors, positions = [], []
            for at in range(start, min(start + batch_size, len(sources))):
                source = sources[at]
                try:
                    data = source.read_bytes() if isinstance(source, Path) else source
                    tensors.append(self.transform(decode_image(data)))
                except Exception as exc:  # unreadable file or bytes PIL cannot decode
                    failed[at] = f"{type(exc).__name__}: {exc}"
                    continue
                positions.append(at)
            if tensors:
                chunks.append((positions, self(torch.stack(tensors), flip_sum=flip_sum)))
            advance(min(batch_size, len(sources) - start))
        return chunks, failed
