"""The plan of `fmlkit synth --ijb`: which crops make which templates and medias
(`plan_templates`), their numbers (`number_frames`, `image_rows`), and the template pairs of
1:1 verification (`plan_pairs`). Everything draws from the plan's generator, so it is a pure
function of the arguments.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fmlkit import columns as C
from fmlkit.data.synth.ijb_draw import IjbFrame

GALLERY_IMAGES = (2, 3)  # images of an identity's gallery template (fewer if M is small)
PROBE_IMAGES = (1, 3)  # images of each probe template
VIDEO_RATE = 0.25  # chance that a media (with ≥ 2 images left in its template) is a video
VIDEO_FRAMES = (2, 3)
ID_GAP = (1, 3)  # template and media ids step by this much: unique, not contiguous
FIRST_MEDIA = 10_000  # media ids start above this
MAX_PAIRS = 50_000  # genuine + imposter pairs, unless the genuine pairs alone are more


@dataclass(frozen=True)
class Template:
    """One template: its id, identity (index), role and medias (media id, images)."""

    id: int
    identity: int
    role: str  # one of C.IJB_ROLES
    medias: tuple[tuple[int, int], ...]


def plan_templates(rng: np.random.Generator, identities: int, m: int) -> list[Template]:
    """Cut each identity's ``m`` images into one gallery template (`GALLERY_IMAGES`) and probe
    templates (`PROBE_IMAGES`), and each template into medias (most of one image, some videos
    of `VIDEO_FRAMES`); ids increase by `ID_GAP` steps."""
    templates: list[Template] = []
    next_template, next_media = 0, FIRST_MEDIA
    for i in range(identities):
        sizes = [min(int(rng.integers(GALLERY_IMAGES[0], GALLERY_IMAGES[1] + 1)), m - 1)]
        while (left := m - sum(sizes)) > 0:
            sizes.append(min(left, int(rng.integers(PROBE_IMAGES[0], PROBE_IMAGES[1] + 1))))
        for j, images in enumerate(sizes):
            medias: list[tuple[int, int]] = []
            while (left := images - sum(f for _, f in medias)) > 0:
                frames = 1
                if left >= 2 and rng.random() < VIDEO_RATE:
                    frames = min(left, int(rng.integers(VIDEO_FRAMES[0], VIDEO_FRAMES[1] + 1)))
                next_media += int(rng.integers(ID_GAP[0], ID_GAP[1] + 1))
                medias.append((next_media, frames))
            next_template += int(rng.integers(ID_GAP[0], ID_GAP[1] + 1))
            role = C.IJB_ROLES[0] if j == 0 else C.IJB_ROLES[1]
            templates.append(Template(next_template, i, role, tuple(medias)))
    return templates


def plan_pairs(
    rng: np.random.Generator, templates: Sequence[Template]
) -> list[tuple[int, int, int]]:
    """``(t1, t2, label)`` with t1 < t2, in a shuffled order: every genuine pair (label 1), and
    every imposter pair (label 0) while the total is ≤ `MAX_PAIRS`, else a sample of
    ``MAX_PAIRS`` − genuine of them (at least as many as the genuine pairs, if there are)."""
    ids = np.array([t.id for t in templates])
    owner = np.array([t.identity for t in templates])
    genuine = _genuine_pairs(ids, owner)
    total = len(ids) * (len(ids) - 1) // 2
    imposters = total - len(genuine)
    if total <= MAX_PAIRS:
        a, b = np.triu_indices(len(ids), k=1)
        keep = owner[a] != owner[b]
        chosen = list(zip(ids[a[keep]].tolist(), ids[b[keep]].tolist(), strict=True))
    else:
        chosen = _sample_imposters(
            rng, ids, owner, min(imposters, max(MAX_PAIRS - len(genuine), len(genuine)))
        )
    pairs = genuine + [(t1, t2, 0) for t1, t2 in chosen]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def _genuine_pairs(ids: np.ndarray, owner: np.ndarray) -> list[tuple[int, int, int]]:
    """Every same-identity template pair (ids of an identity are consecutive and increasing)."""
    pairs = []
    start = 0
    for end in [*np.flatnonzero(np.diff(owner)) + 1, len(owner)]:
        block = ids[start:end].tolist()
        pairs += [(a, b, 1) for a, b in itertools.combinations(block, 2)]
        start = end
    return pairs


def _sample_imposters(
    rng: np.random.Generator, ids: np.ndarray, owner: np.ndarray, count: int
) -> list[tuple[int, int]]:
    """``count`` distinct template pairs of different identities, drawn at random."""
    seen: set[tuple[int, int]] = set()
    chosen: list[tuple[int, int]] = []
    while len(chosen) < count:
        a, b = rng.integers(0, len(ids), size=(2, 2 * (count - len(chosen)) + 16))
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if owner[x] == owner[y]:
                continue
            pair = (int(ids[min(x, y)]), int(ids[max(x, y)]))
            if pair not in seen:
                seen.add(pair)
                chosen.append(pair)
                if len(chosen) == count:
                    break
    return chosen


def number_frames(templates: Sequence[Template]) -> dict[int, list[IjbFrame]]:
    """Each identity's crops, numbered 1, 2, … in template, media and frame order."""
    frames: dict[int, list[IjbFrame]] = {}
    k = 0
    for t in templates:
        for media, count in t.medias:
            for frame in range(count):
                k += 1
                frames.setdefault(t.identity, []).append(IjbFrame(k, media, frame, count))
    return frames


def image_rows(templates: Sequence[Template]) -> list[tuple[int, Template, int]]:
    """(k, template, media id) of every crop, in number order."""
    rows: list[tuple[int, Template, int]] = []
    for t in templates:
        for media, count in t.medias:
            for _ in range(count):
                rows.append((len(rows) + 1, t, media))
    return rows
