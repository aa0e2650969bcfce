"""Column names of fmlkit's tables, and one validator.

Every stage refers to columns through these constants, never through string literals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fmlkit.errors import SchemaError

# dataset_info (written by `fmlkit prepare`, one row per image file, sorted by FILE_NAME)
FILE_NAME = "file_name"  # POSIX path relative to the dataset root
LABEL = "label"  # identity / class name (the top-level folder)
WIDTH = "width"  # pixels, after EXIF orientation is applied
HEIGHT = "height"
MODE = "mode"  # PIL mode: RGB, L, CMYK, …
FORMAT = "format"  # PIL format: JPEG, PNG, …
FILE_SIZE = "file_size"  # bytes
MTIME_NS = "mtime_ns"
MD5 = "md5"  # hex digest of the file bytes
PHASH = "phash"  # 16 hex chars, str(imagehash.phash(...))
DHASH = "dhash"
AHASH = "ahash"
WHASH = "whash"
ERROR = "error"  # empty when the image is readable, else a short reason

# added by `fmlkit split` (input columns and row order are kept)
FOLD = "fold"  # integer: 0..k-1; -1 = always train (label too small to stratify); empty = error row
SPLIT = "split"  # "train" or "test"; empty for a row with an error
SPLIT_VALUES = ("train", "test")

HASH_COLUMNS = (PHASH, DHASH, AHASH, WHASH)
INTEGER_COLUMNS = (WIDTH, HEIGHT, FILE_SIZE, MTIME_NS, FOLD)  # nullable (WIDTH: empty on error)
DATASET_INFO_COLUMNS = (
    FILE_NAME,
    LABEL,
    WIDTH,
    HEIGHT,
    MODE,
    FORMAT,
    FILE_SIZE,
    MTIME_NS,
    MD5,
    *HASH_COLUMNS,
    ERROR,
)

# Values of ERROR: why a file listed in dataset_info cannot be used ("" when it can).
ERROR_REASONS = {
    "empty": "the file has zero bytes",
    "not_image": "the bytes are not an image format Pillow knows (e.g. text named .jpg)",
    "corrupt": "an image header, but the data cannot be decoded",
    "truncated": "the image data ends early",
    "decompression_bomb": "the header claims more pixels than Pillow's safety limit",
    "unreadable": "the file could not be read (permissions or an I/O error)",
    "no_label": "the file lies directly in the dataset folder, not in a class folder",
}

# a verification pair table (`fmlkit pairs`, the pair lists `fmlkit evaluate` reads)
ISSAME = "is_same"  # 1: the two files share a label; 0: they do not
FIRST = "first"  # the first file of the pair (a file_name, or a row position)
SECOND = "second"

# LFW's pairs.txt read into a table (`fmlkit.data.formats.pair_lists.read_lfw_pairs`): ISSAME,
# each image as a label and a number (the file label/label_%04d.jpg), and FOLD (0..folds-1, from
# the line order)
FIRST_LABEL = "first_label"
FIRST_NUMBER = "first_number"
SECOND_LABEL = "second_label"
SECOND_NUMBER = "second_number"
LFW_COLUMNS = (ISSAME, FIRST_LABEL, FIRST_NUMBER, SECOND_LABEL, SECOND_NUMBER, FOLD)

# added to the rows `fmlkit filter --removed` writes (`fmlkit.data.filter`): why each one went
REASON = "reason"  # error:<kind>, too_small, too_large, or the duplicate kind
DUPLICATE_OF = "duplicate_of"  # FILE_NAME of the kept row it duplicates; "" for other reasons
DISTANCE = "distance"  # pHash bits to that row; empty for other reasons
# with --confirm pixels: Pearson correlation of the two images' normalised thumbnails, and
# with --embeddings the cosine of their embeddings (empty where not computed: md5 copies)
PIXEL_SIMILARITY = "pixel_similarity"
EMBEDDING_SIMILARITY = "embedding_similarity"

# an image Parquet dataset (`fmlkit convert`, `fmlkit.data.formats.parquet`), in this order,
# then the dataset_info columns it carries (FILE_NAME, FOLD, SPLIT, …)
IMAGE = "image"  # struct<bytes, path>: Hugging Face's Image layout
CLASS_ID = "label"  # int64 class id 0..classes-1 (a ClassLabel)
LABEL_NAME = "label_name"  # the class name (dataset_info's LABEL), when known
KEY = "key"  # int64: the .rec record key, or the row number
# CLASS_ID and LABEL are one string ("label", as Hugging Face names a class column) with two
# meanings: a class id in a Parquet dataset, a class name in dataset_info and embeddings.

# an embeddings Parquet (`fmlkit embed`): FILE_NAME, LABEL (the class name), then
EMBEDDING = "embedding"  # list<float32> per image, not normalised
# optional in an embeddings Parquet or an image table given to 1:N identification
# (`fmlkit.eval.identify`): rows sharing a TEMPLATE are pooled into one probe / gallery entry
TEMPLATE = "template"  # any value (IJB: an integer template id)
MEDIA = "media"  # within a template, the images of one media (photo, video) are averaged first

# the decisions `fmlkit clean` writes (`fmlkit.data.clean`). images.csv: FILE_NAME, LABEL,
# DECISION, REASON, then these, DUPLICATE_OF, SIMILARITY, SPLIT_GROUP, NEW_LABEL
DECISION = "decision"  # images: keep, review, drop, relabel, duplicate, unusable; classes:
# keep, merge, split, singleton
OWN_SIMILARITY = "own_similarity"  # cosine to its class centroid computed without itself
NEAREST_LABEL = "nearest_label"  # the most similar other class (where computed)
NEAREST_SIMILARITY = "nearest_similarity"  # cosine to that class's centroid
SIMILARITY = "similarity"  # cosine to DUPLICATE_OF, or between a merge pair's centroids
SPLIT_GROUP = "split_group"  # 0/1 for the images of a split candidate, else empty
NEW_LABEL = "new_label"  # the label after the decisions apply; empty for a row removed
CLEAN_IMAGE_COLUMNS = (FILE_NAME, LABEL, DECISION, REASON, OWN_SIMILARITY, NEAREST_LABEL,
                       NEAREST_SIMILARITY, DUPLICATE_OF, SIMILARITY, SPLIT_GROUP,
                       NEW_LABEL)  # fmt: skip
# classes.csv: LABEL, IMAGES, MEAN_SIMILARITY, SPREAD, MIN_SIMILARITY, DECISION, MERGE_GROUP,
# MERGE_INTO, REASON
IMAGES = "images"  # images of the class (usable embeddings)
MEAN_SIMILARITY = "mean_similarity"  # mean OWN_SIMILARITY of its images
SPREAD = "spread"  # standard deviation of OWN_SIMILARITY
MIN_SIMILARITY = "min_similarity"
MERGE_GROUP = "merge_group"  # int: classes to merge share it; empty if none
MERGE_INTO = "merge_into"  # the group's target label (its largest class)
CLEAN_CLASS_COLUMNS = (LABEL, IMAGES, MEAN_SIMILARITY, SPREAD, MIN_SIMILARITY, DECISION,
                       MERGE_GROUP, MERGE_INTO, REASON)  # fmt: skip
# merges.csv: every class pair whose centroids are at least --merge-above alike
LABEL_A = "label_a"
LABEL_B = "label_b"
CLEAN_MERGE_COLUMNS = (LABEL_A, LABEL_B, SIMILARITY, MERGE_GROUP)

# the Arrow cache of a Parquet dataset's image bytes (`fmlkit.data.loading.arrow_cache`)
CACHE_COLUMN = "bytes"  # its one column: each row's encoded image

# ground truth of a synthetic dataset (written by `fmlkit synth`)
KIND = "kind"  # one of TRUTH_KINDS
SOURCE = "source"  # FILE_NAME of the original, for the three duplicate kinds; a LABEL for
# the label-noise kinds: the image's true identity (the identity's other folder, for a split)
TRUTH_COLUMNS = (FILE_NAME, LABEL, KIND, SOURCE)
# the KIND of label noise `fmlkit synth --label-noise` plants: an image of another identity
# (MISLABEL), half an identity's images moved to a folder of their own (SPLIT_IDENTITY), a new
# identity's images added to a folder (MIXED)
MISLABEL, SPLIT_IDENTITY, MIXED = "mislabel", "split_identity", "mixed"
LABEL_NOISE_KINDS = (MISLABEL, SPLIT_IDENTITY, MIXED)

# the table `fmlkit align` writes beside its aligned tree (`fmlkit.data.align`): FILE_NAME (the
# input image), LABEL, then FACES, the chosen face's box, its 5 landmarks, SCORE, RESIDUAL, ERROR
FACES = "faces"  # faces found (detector) or given (landmark file) scoring ≥ the minimum score
BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")  # full-image pixels
# 5 points, insightface order (left eye, right eye, nose, left/right mouth corner), full-image
# pixels: x1, y1, …, x5, y5 (the CSV landmark format `fmlkit align --landmarks` reads)
LANDMARK_COLUMNS = tuple(f"{axis}{i}" for i in range(1, 6) for axis in "xy")
SCORE = "score"  # detector confidence in [0, 1]; 1 for landmarks from a file
RESIDUAL = "residual"  # RMS distance, output pixels, of the mapped points from the template
ALIGNED = "aligned"  # FILE_NAME of the aligned crop in the output tree; "" when none
ALIGN_COLUMNS = (FILE_NAME, LABEL, ALIGNED, FACES, *BOX_COLUMNS, *LANDMARK_COLUMNS, SCORE,
                 RESIDUAL, ERROR)  # fmt: skip
# Values of ERROR in that table: why an input image gave no aligned face ("" when it did)
ALIGN_REASONS = {
    "no_face": "the detector found no face",
    "several_faces": "more than one face, under --select single",
    "low_score": "the detector's candidates (or the file's faces) all score < --min-score",
    "no_landmarks": "the landmark file has no row for the image",
    "bad_landmarks": "landmarks NaN, outside the image, collinear, or far from the template",
    "unreadable": "the file cannot be read or decoded as an image",
    "truncated": "the image data ends early",
    "decompression_bomb": "the header claims more pixels than Pillow's safety limit",
    "name_clash": "another input image gives the same output name (a.jpg and a.png)",
}

# `fmlkit synth --scenes` (`fmlkit.data.synth.scenes`): its truth CSV (one row per file: the
# TRUTH_COLUMNS, then FACES drawn in the photo, empty for a broken file) and its landmark CSV
# (one row per face, in the CSV layout `fmlkit align --landmarks` reads, then the face's
# identity, FACE_INDEX and box)
FACE_INDEX = "face"  # 0: the photo's labelled face, in front; 1, 2: strangers behind it
SCENE_TRUTH_COLUMNS = (*TRUTH_COLUMNS, FACES)
SCENE_LANDMARK_COLUMNS = (FILE_NAME, *LANDMARK_COLUMNS, LABEL, FACE_INDEX, *BOX_COLUMNS)

# `fmlkit synth --ijb` (`fmlkit.data.synth.ijb`): its truth CSV, one row per loose crop
SUBJECT = "subject"  # the identity's SUBJECT_ID in the 1:N files (its index + 1)
ROLE = "role"  # "gallery" or "probe": which 1:N file holds the image's TEMPLATE
IJB_ROLES = ("gallery", "probe")
IJB_TRUTH_COLUMNS = (FILE_NAME, LABEL, SUBJECT, TEMPLATE, MEDIA, ROLE)
# IJB's 1:N gallery and probe lists (`meta/ijbc_1N_*.csv`), as the benchmark names them
IJB_1N_COLUMNS = ("TEMPLATE_ID", "SUBJECT_ID", "FILENAME")

# the table of runs (`fmlkit runs`): these, then one column per setting and per metric, NOTES
RUN_STAGE = "stage"  # the evaluate stage's id
RUN_VERSION = "version"  # its version folder's name
RUN_STARTED = "started"  # when that version was made: UTC, ISO 8601
RUN_CURRENT = "current"  # whether the stage's declared output links to it now
RUN_TRAIN = "train"  # the train stage's version it evaluated; empty when not found
RUN_NOTES = "notes"  # what could not be read for the row, "; "-separated
RUN_COLUMNS = (RUN_STAGE, RUN_VERSION, RUN_STARTED, RUN_CURRENT, RUN_TRAIN)


class _HasColumns(Protocol):
    @property
    def columns(self) -> Iterable[object]: ...


def validate_columns(
    table: _HasColumns,
    required: Iterable[str],
    *,
    what: str = "table",
    fix: str = "Re-create it with `fmlkit prepare`.",
) -> None:
    """Raise `SchemaError` unless ``table`` (a DataFrame or anything with ``.columns``) has all
    ``required`` columns.

    Args:
        table: the table to check.
        required: column names that must be present.
        what: how to name the table in the message, e.g. the file it was read from.
        fix: the last sentence of the message: how to get a table with those columns.
    """
    present = [str(c) for c in table.columns]
    missing = [c for c in required if c not in present]
    if missing:
        raise SchemaError(
            f"{what} is missing column(s) {', '.join(missing)}; "
            f"found: {', '.join(present) or '(none)'}. "
            f"Was it written by another tool or an older fmlkit? {fix}"
        )
