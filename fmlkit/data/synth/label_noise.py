"""The label noise `fmlkit synth --label-noise` plants, with truth: faults in the labels, which a
face model can find and a perceptual hash cannot.

- `mislabel` (`NOISE_RATES`: 2 % of the N × M clean images): a new image drawn from identity B's
  traits, filed under another identity A's folder; its truth ``source`` is B's label.
- `split_identity` (3 % of the identities): ⌊M/2⌋ of identity X's images, chosen at random, in a
  folder of their own (moved: X's folder keeps the other ⌈M/2⌉); ``source`` is X's label.
- `mixed` (3 % of the identities): M images of a new identity Z (drawn like the others, filed
  under no folder of its own) added to identity A's folder; ``source`` is Z's label.

Each count is rounded up, at least one. The kinds fall on distinct identities: no split identity
hosts a mixed folder, and mislabels go between the remaining ("ordinary") identities, so that each
fault can be scored on its own. Names never give the kind away: the split folders take random
numbers among the identity folders, and a folder that gains or loses images has all its images
renumbered in a random order.

This module only plans (which identity draws which image, where it is filed): `draw.render_identity`
draws them, so noise images are kept beyond the pHash near-duplicate distance of every other image,
as clean images are. Planning draws from its own stream, so the rest of the plan is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fmlkit import columns as C
from fmlkit.data.synth.draw import CLEAN
from fmlkit.errors import InputError

# Planted files per clean image (mislabel) or per identity (split_identity, mixed).
NOISE_RATES: Mapping[str, float] = {C.MISLABEL: 0.02, C.SPLIT_IDENTITY: 0.03, C.MIXED: 0.03}
MIN_IDENTITIES = 4  # a split identity, a mixed folder's host, and two for mislabels
MIN_IMAGES = 4  # per identity: both halves of a split identity keep ≥ 2 images

Placement = tuple[str, str, str]  # folder, truth kind, source


@dataclass(frozen=True)
class JobPlan:
    """One identity's images to draw: where each is filed, under which name and truth row."""

    index: int  # the identity's index in the identity and image streams
    label: str  # its label (for a mixed folder's new identity: a label of no folder)
    names: tuple[str, ...]  # file name of each image, in its folder
    placed: tuple[Placement, ...]  # folder, truth kind, source of each image
    greyscale: frozenset[int]


@dataclass(frozen=True)
class TreePlan:
    """Every identity's images to draw, and where each is filed."""

    labels: tuple[str, ...]  # every folder, sorted
    jobs: tuple[JobPlan, ...]  # the N identities in index order, then the mixed folders' new ones
    owners: Mapping[str, int]  # the identity whose images fill each folder (for broken files)


def noise_counts(identities: int, images_per_identity: int) -> dict[str, int]:
    """How many mislabelled images, split identities and mixed folders are planted."""
    per = {
        C.MISLABEL: identities * images_per_identity,
        C.SPLIT_IDENTITY: identities,
        C.MIXED: identities,
    }
    return {kind: max(1, math.ceil(rate * per[kind])) for kind, rate in NOISE_RATES.items()}


def check_label_noise(identities: int, images_per_identity: int) -> None:
    """Raise `InputError` where the label noise cannot be planted as documented."""
    # split and mixed take ⌈3 %⌉ of the identities each, mislabels two more: N ≥ 4 has them
    if identities < MIN_IDENTITIES or images_per_identity < MIN_IMAGES:
        raise InputError(
            f"label noise needs at least {MIN_IDENTITIES} identities and {MIN_IMAGES} images per "
            f"identity (a split identity keeps ≥ 2 images in each folder; a mislabel moves "
            f"between two other identities), got {identities} × {images_per_identity}; "
            "ask for more, or leave out label noise"
        )


def renumber(name: str, number: int, width: int) -> str:
    """``name`` with its leading image number (``width`` digits) replaced by ``number``."""
    return f"{number:0{width}d}{name[width:]}"


def plan_label_noise(
    names: list[list[str]], greyscale: list[set[int]], *, width: int, rng: np.random.Generator
) -> TreePlan:
    """Plan the label noise over the clean images' names (``names[i][j]``: identity i's image j,
    its number first, ``width`` digits) and greyscale picks.

    Raises:
        InputError: too few identities or images (`check_label_noise`).
    """
    n, m = len(names), len(names[0])
    check_label_noise(n, m)
    counts = noise_counts(n, m)
    n_split, n_mixed = counts[C.SPLIT_IDENTITY], counts[C.MIXED]
    order = [int(i) for i in rng.permutation(n)]
    split, hosts, ordinary = (
        order[:n_split],
        order[n_split : n_split + n_mixed],
        order[n_split + n_mixed :],
    )
    folders = n + n_split
    new_slots = {int(x) for x in rng.choice(folders, size=n_split, replace=False)}
    digits = max(5, len(str(folders + n_mixed - 1)))
    slot_labels = [f"id{x:0{digits}d}" for x in range(folders)]
    label_of = [slot_labels[x] for x in range(folders) if x not in new_slots]
    split_labels = [slot_labels[x] for x in sorted(new_slots)]
    owners = {label_of[i]: i for i in range(n)} | dict(zip(split_labels, split, strict=True))

    placed: list[list[Placement]] = [[(label_of[i], CLEAN, "")] * m for i in range(n)]
    job_names = [list(row) for row in names]
    for x, folder in zip(split, split_labels, strict=True):
        for j in rng.choice(m, size=m // 2, replace=False):
            placed[x][int(j)] = (folder, C.SPLIT_IDENTITY, label_of[x])
    for _ in range(counts[C.MISLABEL]):
        b, a = (ordinary[int(k)] for k in rng.choice(len(ordinary), size=2, replace=False))
        placed[b].append((label_of[a], C.MISLABEL, label_of[b]))  # drawn from b, filed under a
        job_names[b].append(f"{0:0{width}d}.jpg")  # numbered below
    for z, host in enumerate(hosts):
        placed.append([(label_of[host], C.MIXED, f"id{folders + z:0{digits}d}")] * m)
        job_names.append([f"{j:0{width}d}.jpg" for j in range(m)])
    _renumber_changed_folders(placed, job_names, width, rng)

    identities = [(i, label_of[i]) for i in range(n)]
    identities += [(n + z, placed[n + z][0][2]) for z in range(n_mixed)]
    jobs = tuple(
        JobPlan(
            index=index,
            label=label,
            names=tuple(job_names[t]),
            placed=tuple(placed[t]),
            greyscale=frozenset(greyscale[t]) if t < n else frozenset(),
        )
        for t, (index, label) in enumerate(identities)
    )
    return TreePlan(labels=tuple(sorted(owners)), jobs=jobs, owners=owners)


def _renumber_changed_folders(
    placed: list[list[Placement]], names: list[list[str]], width: int, rng: np.random.Generator
) -> None:
    """Number the images of every folder that gained or lost images 0, 1, … in a random order,
    so neither the numbers nor gaps in them tell which images were planted."""
    members: dict[str, list[tuple[int, int]]] = {}
    changed = set()
    for t, job in enumerate(placed):
        for j, (folder, kind, source) in enumerate(job):
            members.setdefault(folder, []).append((t, j))
            if kind != CLEAN:
                changed.add(folder)
                if kind == C.SPLIT_IDENTITY:
                    changed.add(source)  # the folder that lost them
    for folder, images in members.items():
        if folder in changed:
            for number, (t, j) in zip(rng.permutation(len(images)), images, strict=True):
                names[t][j] = renumber(names[t][j], int(number), width)
