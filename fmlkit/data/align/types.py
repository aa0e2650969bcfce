"""Types shared by the align package: a detected or given face, the detector protocol, and the
ArcFace 5-point template."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: ArcFace 112×112 template (insightface): left eye, right eye, nose, left mouth corner, right
#: mouth corner, in output pixels (x, y) with pixel centres at integers.
ARCFACE_112: np.ndarray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_112.flags.writeable = False


@dataclass(frozen=True)
class Face:
    """One face in a full-resolution image.

    Attributes:
        box: x1, y1, x2, y2 in full-image pixels.
        landmarks: (5, 2) float64 array of x, y in full-image pixels, insightface order: left eye,
            right eye, nose, left mouth corner, right mouth corner ("left" as seen in the image:
            smaller x for an upright frontal face).
        score: detector confidence in [0, 1]; 1.0 for landmarks given in a file.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float = 1.0


class Detector(Protocol):
    """A face detector: full-resolution RGB images in, faces per image out."""

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect faces in each image.

        Args:
            images: H×W×3 uint8 RGB arrays at full resolution (EXIF orientation already applied);
                the detector resizes to its bounded working size itself.

        Returns:
            One list of faces per image, boxes and landmarks in full-image pixels.
        """
        ...
