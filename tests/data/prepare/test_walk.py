from __future__ import annotations

from pathlib import Path

import pytest

from fmlkit.data.prepare.walk import (
    FileEntry,
    Unlisted,
    count_images,
    normalize_extensions,
    walk_dataset,
)
from fmlkit.errors import InputError
from tests.unprivileged import run_unprivileged, shared_tmp_dir


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_walk_order_is_full_path_string_order(tmp_path: Path) -> None:
    # "a.b" sorts before "a/" as full paths ('.' < '/'), "a-" before both, "a0" after
    rels = ["a/x.jpg", "a.b/x.jpg", "a-/x.jpg", "a0/x.jpg", "a/b/c.jpg", "a/b.jpg", "a/B.jpg"]
    _touch(tmp_path, *rels)
    found = [e.rel for e in walk_dataset(tmp_path) if isinstance(e, FileEntry)]
    assert found == sorted(rels)


def test_count_images_counts_what_the_walk_lists_as_images(tmp_path: Path) -> None:
    _touch(tmp_path, "a/1.jpg", "a/deep/2.PNG", "b/3.webp", "top.jpg", "a/notes.txt",
           ".hidden/4.jpg", "b/.5.jpg", "c.jpg/6.jpg")  # fmt: skip
    listed = [e for e in walk_dataset(tmp_path) if isinstance(e, FileEntry)]
    assert count_images(tmp_path, ["jpg", "png", "webp"]) == len(listed) == 5
    assert count_images(tmp_path, ["png"]) == 1


def test_walk_labels_and_root_files(tmp_path: Path) -> None:
    _touch(tmp_path, "cls/deep/er/x.png", "top.jpg")
    entries = {e.rel: e for e in walk_dataset(tmp_path) if isinstance(e, FileEntry)}
    assert entries["cls/deep/er/x.png"].label == "cls"
    assert entries["top.jpg"].label == ""


def test_walk_link_into_a_sibling_is_followed_once_and_loops_are_not(tmp_path: Path) -> None:
    _touch(tmp_path, "a/x.jpg", "b/y.jpg")
    (tmp_path / "a" / "to_b").symlink_to("../b")
    (tmp_path / "b" / "to_a").symlink_to("../a")  # a → b → a would loop
    items = list(walk_dataset(tmp_path))
    files = [e.rel for e in items if isinstance(e, FileEntry)]
    assert files == ["a/to_b/y.jpg", "a/x.jpg", "b/to_a/x.jpg", "b/y.jpg"]
    loops = sorted(e.rel for e in items if isinstance(e, Unlisted))
    assert loops == ["a/to_b/to_a/", "b/to_a/to_b/"]


def test_walk_extensions_are_case_insensitive(tmp_path: Path) -> None:
    _touch(tmp_path, "c/A.JPG", "c/b.Png", "c/c.gif")
    items = list(walk_dataset(tmp_path, extensions=[".jpg", "PNG"]))
    assert [e.rel for e in items if isinstance(e, FileEntry)] == ["c/A.JPG", "c/b.Png"]
    assert [(e.rel, e.reason) for e in items if isinstance(e, Unlisted)] == [
        ("c/c.gif", "not_image_extension")
    ]
    with pytest.raises(InputError, match="no image extensions"):
        normalize_extensions([" ", "."])


def test_walk_unlistable_folder_is_reported() -> None:
    with shared_tmp_dir() as base:
        _touch(base, "ok/x.jpg", "locked/y.jpg")
        (base / "ok").chmod(0o755)
        (base / "locked").chmod(0)
        done = run_unprivileged(
            "from fmlkit.data.prepare.walk import walk_dataset",
            "print('|'.join(f'{e.rel}:{getattr(e, \"reason\", \"file\")}' "
            "for e in walk_dataset(sys.argv[1])))",
            str(base),
        )
        (base / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split("|") == ["locked/:unreadable_folder", "ok/x.jpg:file"]
