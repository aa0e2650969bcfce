"""IJB-B / IJB-C protocol folders: the meta files read into arrays.

The layout is in docs/formats.md#ijb-b--ijb-c-meta-files.

A folder ``DIR`` holds ``loose_crop/<image>`` and ``meta/`` (or the meta files directly), with
``ijbb_`` (IJB-B) or ``ijbc_`` (IJB-C) names, as insightface's IJB release lays them out:

- ``<kind>_face_tid_mid.txt``: ``image_name template_id media_id`` per line;
- ``<kind>_name_5pts_score.txt``: ``image_name x1 y1 … x5 y5 detector_score``;
- ``<kind>_template_pair_label.txt``: ``template_a template_b label`` (1 genuine, 0 imposter);
- optionally the 1:N CSV files (header ``TEMPLATE_ID,SUBJECT_ID,…``, one row per image): two
  galleries (IJB-C ``G1``/``G2``, IJB-B ``S1``/``S2``) and ``<kind>_1N_probe_mixed.csv``.

The files are read by `fmlkit.data.formats.spaced_text` (a bad line is named by file and
line). Nothing here decodes an image or imports torch.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fmlkit.data.formats.spaced_text import SHOWN, line_of_row, read_columns
from fmlkit.errors import InputError

KINDS = ("ijbb", "ijbc")
GALLERIES = {"ijbb": ("S1", "S2"), "ijbc": ("G1", "G2")}
CROPS = "loose_crop"
_ONE_TO_N_HEADER = ("TEMPLATE_ID", "SUBJECT_ID")
_BLOCK = 1 << 20  # rows checked at a time against the known templates


@dataclass(frozen=True)
class IjbProtocol:
    """One IJB-B or IJB-C protocol, read by `read_ijb`.

    Attributes:
        kind: ``"ijbb"`` or ``"ijbc"``.
        root: the folder given (``DIR``).
        meta: the folder of the meta files (``DIR/meta``, or ``DIR``).
        crops: the loose crops' folder, ``DIR/loose_crop``.
        images: image names (object array), in ``face_tid_mid`` order.
        templates: int64 template id of each image.
        medias: int64 media id of each image.
        landmarks: float64 (n, 5, 2) five points of each image, pixels of its loose crop
            (read as `fmlkit align --landmarks` reads them: the same warp to the pixel).
        detector_scores: float64 (n,) detector score of each image.
        pairs: int64 (p, 2) template ids of each verification pair, in file order.
        labels: int8 (p,) 1 for a genuine pair, 0 for an imposter pair.
        galleries: 1:N galleries by name (``{"G1": (template ids, subject ids), …}``, one entry
            per template, sorted by template id); empty without the 1:N files.
        probes: the 1:N probe templates and their subjects, as a gallery; None without them.
    """

    kind: str
    root: Path
    meta: Path
    crops: Path
    images: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    detector_scores: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray
    galleries: dict[str, tuple[np.ndarray, np.ndarray]]
    probes: tuple[np.ndarray, np.ndarray] | None


def find_ijb(folder: str | os.PathLike[str]) -> tuple[str, Path]:
    """(kind, meta folder) of an IJB folder: ``"ijbb"`` or ``"ijbc"`` from the name of its
    ``*_face_tid_mid.txt``, looked for in ``folder/meta`` if that exists, else in ``folder``.

    Raises:
        InputError: the folder is missing, or holds neither kind's file, or both.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"IJB folder {root} does not exist or is not a folder")
    meta = root / "meta" if (root / "meta").is_dir() else root
    found = [kind for kind in KINDS if (meta / f"{kind}_face_tid_mid.txt").is_file()]
    if not found:
        raise InputError(
            f"{root} is not an IJB-B/IJB-C folder: found neither {meta}/ijbb_face_tid_mid.txt "
            "nor ijbc_face_tid_mid.txt; give the folder holding loose_crop/ and meta/"
        )
    if len(found) > 1:
        raise InputError(
            f"{meta} holds both ijbb_face_tid_mid.txt and ijbc_face_tid_mid.txt; "
            "keep IJB-B and IJB-C in separate folders"
        )
    return found[0], meta


def read_ijb(folder: str | os.PathLike[str], *, crops: bool = True) -> IjbProtocol:
    """Read and check an IJB-B/IJB-C folder's meta files (see the module docstring).

    Args:
        folder: ``DIR``, holding ``meta/`` (or the meta files) and ``loose_crop/``.
        crops: require the ``loose_crop`` folder (False: scores come from embeddings computed
            elsewhere, and no crop is read).

    Raises:
        InputError: a missing folder or meta file, a malformed line (named by file and line),
            duplicated image names, images without landmarks, a NaN/inf landmark or detector
            score, an empty pair list, a pair or 1:N template unknown to ``face_tid_mid``, a
            1:N template with two subjects, or only some of the three 1:N files.
    """
    kind, meta = find_ijb(folder)
    root = Path(folder)
    crop_dir = root / CROPS
    if crops and not crop_dir.is_dir():
        raise InputError(f"IJB folder {root} has no {CROPS}/ folder of face crops")
    images, templates, medias = _read_faces(_meta_file(meta, f"{kind}_face_tid_mid.txt"))
    landmarks, scores = _read_landmarks(_meta_file(meta, f"{kind}_name_5pts_score.txt"), images)
    pairs, labels = _read_pairs(_meta_file(meta, f"{kind}_template_pair_label.txt"), templates)
    galleries, probes = _read_one_to_n(meta, kind, templates)
    return IjbProtocol(
        kind=kind,
        root=root,
        meta=meta,
        crops=crop_dir,
        images=images,
        templates=templates,
        medias=medias,
        landmarks=landmarks,
        detector_scores=scores,
        pairs=pairs,
        labels=labels,
        galleries=galleries,
        probes=probes,
    )


def _meta_file(meta: Path, name: str) -> Path:
    path = meta / name
    if not path.is_file():
        raise InputError(f"IJB meta file {path} is missing; it comes with the IJB release's meta/")
    return path


def _read_faces(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image names, template ids and media ids of ``face_tid_mid``; names must be unique."""
    images, templates, medias = read_columns(
        path, ("name", "int", "int"), "image_name template_id media_id"
    )
    if images.size == 0:
        raise InputError(
            f"{path} lists no image; it needs one 'image_name template_id media_id' line per image"
        )
    _unique_names(images, path)
    return images, templates, medias


def _unique_names(names: np.ndarray, path: Path) -> None:
    index = pd.Index(names)
    if index.has_duplicates:
        repeated = index[index.duplicated()].unique()
        shown = ", ".join(repeated[:3].astype(str))
        raise InputError(
            f"{path} names {repeated.size} image(s) more than once (e.g. {shown}); "
            "each image must appear on one line"
        )


def _read_landmarks(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (n, 5, 2) and detector scores (n,) of ``images``, matched by name."""
    kinds = ("name", *("float",) * 11)
    fields = "image_name x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 detector_score"
    names, *values = read_columns(path, kinds, fields)
    _unique_names(names, path)
    points = np.stack(values[:10], axis=1).reshape(-1, 5, 2)
    scores = values[10]
    if not np.array_equal(names, images):
        rows = pd.Index(names).get_indexer(images)
        missing = rows < 0
        if missing.any():
            shown = ", ".join(str(name) for name in images[missing][:3])
            raise InputError(
                f"{int(missing.sum())} image(s) of face_tid_mid have no landmarks in {path} "
                f"(e.g. {shown}); each needs an 'image_name x1 y1 … x5 y5 score' line"
            )
        points, scores = points[rows], scores[rows]
    return points, scores


def _read_pairs(path: Path, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Template pairs (p, 2) and labels (p,) int8; every template must have images."""
    first, second, labels = read_columns(
        path, ("int", "int", "label"), "template_a template_b label"
    )
    if labels.size == 0:
        raise InputError(f"{path} lists no template pair; nothing to verify")
    pairs = np.stack([first, second], axis=1)
    known = _known(pairs, np.unique(templates))
    if not known.all():
        row = int(np.flatnonzero(~known.all(axis=1))[0])
        template = pairs[row, 0] if not known[row, 0] else pairs[row, 1]
        raise InputError(
            f"{path}:{line_of_row(path, row)[0]}: template {template} has no image in "
            f"face_tid_mid ({int((~known.all(axis=1)).sum())} pair(s) name unknown templates)"
        )
    return pairs, labels.astype(np.int8)


def _known(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Whether each of ``ids`` is in ``known`` (sorted, not empty): a lookup table when the
    known ids span a small range, else a binary search; in blocks of rows, so that IJB-C's
    15.7M pairs need no full-size temporary arrays."""
    found = np.empty(ids.shape, dtype=bool)
    lowest, span = int(known[0]), int(known[-1]) - int(known[0]) + 1
    table = None
    if span <= max(4 * known.size, 1 << 22):
        table = np.zeros(span, dtype=bool)
        table[known - lowest] = True
    for begin in range(0, len(ids), _BLOCK):
        block = ids[begin : begin + _BLOCK]
        if table is not None:
            offsets = block - lowest
            inside = (offsets >= 0) & (offsets < span)
            found[begin : begin + _BLOCK] = inside & table[np.where(inside, offsets, 0)]
        else:
            rows = np.searchsorted(known, block).clip(max=known.size - 1)
            found[begin : begin + _BLOCK] = known[rows] == block
    return found


def _read_one_to_n(
    meta: Path, kind: str, templates: np.ndarray
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray] | None]:
    """The 1:N galleries and probes when all three files are present; none when none is."""
    names = {g: meta / f"{kind}_1N_gallery_{g}.csv" for g in GALLERIES[kind]}
    names["probe"] = meta / f"{kind}_1N_probe_mixed.csv"
    present = {key: path.is_file() for key, path in names.items()}
    if not any(present.values()):
        return {}, None
    if not all(present.values()):
        missing = ", ".join(path.name for key, path in names.items() if not present[key])
        raise InputError(
            f"{meta} holds only some of the 1:N files: {missing} missing; "
            "add them or remove the others"
        )
    known = np.unique(templates)
    read = {key: _read_subjects(path, known) for key, path in names.items()}
    probes = read.pop("probe")
    return read, probes


def _read_subjects(path: Path, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique template ids, their subject ids) of a 1:N CSV file."""
    template, subject = _read_csv_ids(path)
    if template.size == 0:
        raise InputError(f"{path} lists no template; a 1:N file has one row per image")
    order = np.lexsort((subject, template))
    template, subject = template[order], subject[order]
    first = np.r_[True, template[1:] != template[:-1]]
    conflict = ~first & (subject != np.r_[subject[0:1], subject[:-1]])
    if conflict.any():
        i = int(np.flatnonzero(conflict)[0])
        raise InputError(
            f"{path}: template {template[i]} has two subjects ({subject[i - 1]} and "
            f"{subject[i]}); a template shows one subject"
        )
    unknown = ~np.isin(template[first], known)
    if unknown.any():
        bad = template[first][unknown]
        raise InputError(
            f"{path}: {bad.size} template(s) have no image in face_tid_mid (e.g. "
            f"{', '.join(str(t) for t in bad[:3])})"
        )
    return template[first], subject[first]


def _read_csv_ids(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first two columns (TEMPLATE_ID, SUBJECT_ID, integers) of a 1:N CSV file."""
    expected = "TEMPLATE_ID,SUBJECT_ID,…"
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(field.strip().upper() for field in header[:2]) != _ONE_TO_N_HEADER:
        raise InputError(f'{path}:1: expected "{expected}", found "{",".join(header)[:SHOWN]}"')
    try:
        frame = pd.read_csv(
            path, usecols=[0, 1], dtype=np.int64, engine="c", na_filter=False, encoding="utf-8-sig"
        )
        return frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy()
    except (ValueError, OverflowError):
        pass
    template, subject = [], []
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for record in reader:
            if not record:
                continue
            try:
                template.append(int(record[0]))
                subject.append(int(record[1]))
            except (ValueError, IndexError):
                found = ",".join(record)[:SHOWN]
                raise InputError(
                    f'{path}:{reader.line_num}: expected "{expected}" with integer ids, '
                    f'found "{found}"'
                ) from None
    return np.array(template, dtype=np.int64), np.array(subject, dtype=np.int64)
