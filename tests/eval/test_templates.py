"""IJB template verification against plain loops written from insightface's eval_ijbc.py, and
TAR@FAR "closest" against insightface's own recipe run with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from fmlkit.errors import InputError
from fmlkit.eval import templates as templates_module
from fmlkit.eval.templates import (
    IJB_FARS,
    image_features,
    pair_scores,
    roc_curve_points,
    tar_at_far_ijb,
    template_features,
)


def _protocol(seed: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random features of images in random templates: some templates of one image, some
    medias of several images, some templates over several medias (media ids shared between
    templates too, as IJB's are)."""
    rng = np.random.default_rng(seed)
    templates, medias = [], []
    for template in rng.permutation(60) * 7 + 3:
        size = int(rng.choice([1, 1, 2, 5, 12]))
        templates += [int(template)] * size
        medias += rng.integers(0, max(1, size // 2) + 1, size).tolist()
    order = rng.permutation(len(templates))  # images not grouped by template
    features = rng.normal(size=(len(templates), dim)).astype(np.float32)
    return features, np.array(templates)[order], np.array(medias)[order]


def _template_loop(features: np.ndarray, templates: np.ndarray, medias: np.ndarray) -> dict:
    pooled = {}
    for template in set(templates.tolist()):
        total = np.zeros(features.shape[1])
        in_template = templates == template
        for media in set(medias[in_template].tolist()):
            rows = features[in_template & (medias == media)].astype(np.float64)
            total += rows.sum(axis=0) / len(rows)
        pooled[template] = total / np.sqrt((total**2).sum())
    return pooled


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_template_features_equal_the_loop(seed: int) -> None:
    features, templates, medias = _protocol(seed)
    assert np.bincount(np.unique(templates, return_counts=True)[1]).size > 2  # sizes vary
    ids, pooled = template_features(features, templates, medias)
    reference = _template_loop(features, templates, medias)
    assert ids.dtype == np.int64 and pooled.dtype == np.float32
    assert ids.tolist() == sorted(reference)
    expected = np.array([reference[t] for t in ids.tolist()])
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-6)


def test_template_features_in_small_blocks_equal_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    features, templates, medias = _protocol(3)
    ids, pooled = template_features(features, templates, medias)
    for block in (1, 7, 50):
        monkeypatch.setattr(templates_module, "POOL_BLOCK", block)
        small_ids, small = template_features(features, templates, medias)
        assert np.array_equal(small_ids, ids)
        np.testing.assert_allclose(small, pooled, rtol=0, atol=1e-7)


def test_template_features_media_mean_not_image_sum() -> None:
    # template 5: media 1 has two images, media 2 one: (mean(a, b) + c), normalised
    features = np.array([[2, 0], [0, 0], [0, 1]], np.float32)
    ids, pooled = template_features(features, np.array([5, 5, 5]), np.array([1, 1, 2]))
    assert ids.tolist() == [5]
    np.testing.assert_allclose(pooled[0], np.array([1, 1]) / np.sqrt(2), atol=1e-7)


def test_template_features_zero_sum_stays_zero() -> None:
    features = np.array([[1, 0], [-1, 0], [0, 3]], np.float32)
    ids, pooled = template_features(features, np.array([1, 1, 2]), np.array([0, 1, 0]))
    assert ids.tolist() == [1, 2]
    assert pooled[0].tolist() == [0, 0] and pooled[1].tolist() == [0, 1]


def test_template_features_refuse_mismatched_lengths() -> None:
    with pytest.raises(InputError, match="same images"):
        template_features(np.zeros((3, 2)), np.zeros(2), np.zeros(3))


def _image_loop(
    plain: np.ndarray,
    flipped: np.ndarray,
    scores: np.ndarray,
    flip: bool,
    norm_score: bool,
    detector_score: bool,
) -> np.ndarray:
    rows = []
    for i in range(len(plain)):
        x = plain[i].astype(np.float64) + (flipped[i] if flip else 0)
        if not norm_score:  # insightface: use_norm_score=False normalises
            x = x / np.sqrt((x**2).sum())
        if detector_score:
            x = x * scores[i]
        rows.append(x)
    return np.array(rows)


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("norm_score", [True, False])
@pytest.mark.parametrize("detector_score", [True, False])
def test_image_features_equal_the_loop(flip: bool, norm_score: bool, detector_score: bool) -> None:
    rng = np.random.default_rng(4)
    plain, flipped = rng.normal(size=(2, 20, 6)).astype(np.float32)
    scores = rng.uniform(0.1, 1, 20).astype(np.float32)
    got = image_features(
        plain, flipped, scores, flip=flip, norm_score=norm_score, detector_score=detector_score
    )
    expected = _image_loop(plain, flipped, scores, flip, norm_score, detector_score)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    norms = np.linalg.norm(got, axis=1)
    assert np.allclose(norms, scores if detector_score else 1) != norm_score


def test_image_features_need_their_inputs() -> None:
    plain = np.ones((2, 3), np.float32)
    with pytest.raises(InputError, match="flipped"):
        image_features(plain, None, np.ones(2))
    with pytest.raises(InputError, match="detector score"):
        image_features(plain, plain, None)
    with pytest.raises(InputError, match=r"3 detector score\(s\) for 2"):
        image_features(plain, plain, np.ones(3))
    with pytest.raises(InputError, match="shape"):
        image_features(plain, np.ones((2, 4)), np.ones(2))


def test_image_features_name_nan_rows() -> None:
    plain = np.ones((4, 3), np.float32)
    plain[2, 1] = np.nan
    with pytest.raises(InputError, match=r"embeddings: 1 row\(s\) hold NaN or inf \(rows 2\)"):
        image_features(plain, flip=False, detector_score=False)
    flipped = np.ones((4, 3), np.float32)
    flipped[3, 0] = np.inf
    with pytest.raises(InputError, match=r"flipped embeddings: .*rows 3"):
        image_features(np.ones((4, 3)), flipped, detector_score=False)
    with pytest.raises(InputError, match=r"detector scores: .*rows 0"):
        image_features(np.ones((4, 3)), flip=False, detector_scores=np.array([np.nan, 1, 1, 1]))


@pytest.mark.parametrize("density", [0, 10**9])  # gathered features, matrix products
def test_pair_scores_equal_the_loop(monkeypatch: pytest.MonkeyPatch, density: int) -> None:
    monkeypatch.setattr(templates_module, "GRAM_DENSITY", density)
    features, templates, medias = _protocol(5, dim=16)
    ids, pooled = template_features(features, templates, medias)
    rng = np.random.default_rng(5)
    pairs = rng.choice(ids, size=(500, 2))
    reference = _template_loop(features, templates, medias)
    expected = [float(np.dot(reference[a], reference[b])) for a, b in pairs.tolist()]
    got = pair_scores(ids, pooled, pairs)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    monkeypatch.setattr(templates_module, "PAIR_BLOCK_VALUES", 16 * 7)  # 7 pairs a block
    monkeypatch.setattr(templates_module, "GRAM_BLOCK_VALUES", ids.size * 5)  # 5 templates
    monkeypatch.setattr(templates_module, "ROWS_BLOCK", 13)
    np.testing.assert_allclose(pair_scores(ids, pooled, pairs), got, rtol=0, atol=1e-6)


def test_pair_scores_choose_products_for_dense_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = templates_module._scores_by_products

    def counted(*args: np.ndarray) -> None:
        calls.append(1)
        original(*args)

    monkeypatch.setattr(templates_module, "_scores_by_products", counted)
    ids, pooled = np.arange(100), np.eye(100, dtype=np.float32)
    pair_scores(ids, pooled, np.array([[1, 2]]))  # 1 pair of 100 × 100: gathered
    assert calls == []
    dense = np.stack(np.meshgrid(ids, ids), axis=-1).reshape(-1, 2)
    assert np.array_equal(pair_scores(ids, pooled, dense), dense[:, 0] == dense[:, 1])
    assert calls == [1]


def test_pair_scores_refuse_an_unknown_template() -> None:
    ids, pooled = np.array([1, 4, 9]), np.eye(3, dtype=np.float32)
    with pytest.raises(
        InputError, match=r"no feature; the first, pair 1 \(4, 5\), names template 5"
    ):
        pair_scores(ids, pooled, np.array([[1, 4], [4, 5], [9, 9]]))
    with pytest.raises(InputError, match="names template 0"):
        pair_scores(ids, pooled, np.array([[0, 1]]))
    with pytest.raises(InputError, match="names template 10"):
        pair_scores(ids, pooled, np.array([[1, 10]]))


def test_pair_scores_ids_over_a_wide_range_and_no_templates() -> None:
    # ids spread over 1e12: looked up by binary search instead of a table
    ids, pooled = np.array([1, 10**12, 2 * 10**12]), np.eye(3, dtype=np.float32)
    pairs = np.array([[10**12, 10**12], [1, 2 * 10**12]])
    assert pair_scores(ids, pooled, pairs).tolist() == [1.0, 0.0]
    with pytest.raises(InputError, match=r"pair 1 \(1, 7\), names template 7"):
        pair_scores(ids, pooled, np.array([[1, 1], [1, 7]]))
    with pytest.raises(InputError, match="names template 3"):
        pair_scores(np.array([], np.int64), np.zeros((0, 3), np.float32), np.array([[3, 1]]))


def test_pair_scores_refuse_ids_that_do_not_fit_the_features() -> None:
    with pytest.raises(InputError, match=r"3 template id\(s\) for template features of shape"):
        pair_scores(np.array([1, 2, 3]), np.eye(2, dtype=np.float32), np.array([[1, 2]]))
    with pytest.raises(InputError, match="sorted ascending and unique"):
        pair_scores(np.array([2, 1]), np.eye(2, dtype=np.float32), np.array([[1, 2]]))


def _insightface_closest(
    labels: np.ndarray, scores: np.ndarray, fars: tuple[str, ...] = IJB_FARS
) -> dict[str, float]:
    """eval_ijbc.py's reading of the ROC, verbatim but for the names (its targets are
    ``10 ** -k``, equal to the float literals ``1e-k``)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    result = {}
    for key in fars:
        _, min_index = min(zip(abs(fpr - float(key)), range(len(fpr)), strict=True))
        result[key] = float(tpr[min_index])
    return result


def _interpolated_loop(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """TPR at FPR = target along the full ROC: every distinct score a point, linear between."""
    points = [(0.0, 0.0)]
    for threshold in sorted(set(scores.tolist()), reverse=True):
        accepted = scores >= threshold
        points.append((accepted[labels == 0].mean(), accepted[labels == 1].mean()))
    below = [p for p in points if p[0] <= target]
    far, tar = max(below)  # the last point at or below the target, highest TPR there
    if far == target:
        return tar
    after = min(p for p in points if p[0] > target)  # the next point, lowest TPR there
    return tar + (target - far) / (after[0] - far) * (after[1] - tar)


@pytest.mark.parametrize("seed", range(8))
def test_tar_at_far_closest_equals_insightface_with_sklearn(seed: int) -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2000, 30000))
    labels = (rng.random(n) < rng.uniform(0.02, 0.4)).astype(np.int8)
    scores = rng.normal(size=n) + labels * rng.uniform(0.5, 3)
    scores = np.round(scores, seed % 3)  # many ties; 0 decimals: long equal-step runs
    result = tar_at_far_ijb(labels, scores)
    expected = _insightface_closest(labels, scores)
    imposters = int((labels == 0).sum())
    for key in IJB_FARS:
        if imposters < 1 / float(key):
            assert result["closest"][key] is None and result["interpolated"][key] is None
        else:
            assert result["closest"][key] == expected[key], key
    assert result["genuine"] == int(labels.sum()) and result["imposter"] == imposters


def test_tar_at_far_closest_reads_the_dropped_roc_as_insightface() -> None:
    # scores 10 … 1 each hold one genuine and one imposter pair: a straight run of equal steps,
    # whose inner points scikit-learn drops, so FPR 0.3 is read at the kept point FPR 0.1
    pytest.importorskip("sklearn")
    labels = np.tile(np.array([1, 0], np.int8), 10)
    scores = np.repeat(np.arange(10, 0, -1.0), 2)
    result = tar_at_far_ijb(labels, scores, fars=("3e-1",))
    assert result["closest"]["3e-1"] == pytest.approx(0.1)
    assert result["closest"] == _insightface_closest(labels, scores, ("3e-1",))
    assert result["interpolated"]["3e-1"] == pytest.approx(0.3)
    assert roc_curve_points(labels, scores)[0].size == 11


@pytest.mark.parametrize("seed", range(3))
def test_tar_at_far_interpolated_and_auc_equal_the_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(3000) < 0.3).astype(np.int8)
    scores = np.round(rng.normal(size=3000) + labels, 1 + seed)
    result = tar_at_far_ijb(labels, scores, fars=("1e-3", "1e-2", "1e-1"))
    for key in ("1e-3", "1e-2", "1e-1"):
        expected = _interpolated_loop(labels, scores, float(key))
        assert result["interpolated"][key] == pytest.approx(expected, abs=1e-12)
    genuine, imposter = scores[labels == 1], scores[labels == 0]
    wins = (genuine[:, None] > imposter[None, :]).mean() + 0.5 * (
        genuine[:, None] == imposter[None, :]
    ).mean()
    assert result["auc"] == pytest.approx(wins, abs=1e-12)


def test_roc_curve_points_equal_sklearn_full_curve() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = (rng.random(5000) < 0.2).astype(np.int8)
    scores = np.round(rng.normal(size=5000) + labels, 1)
    fpr, tpr = roc_curve_points(labels, scores)
    expected_fpr, expected_tpr, _ = sklearn_metrics.roc_curve(
        labels, scores, drop_intermediate=False
    )
    assert np.array_equal(fpr, expected_fpr) and np.array_equal(tpr, expected_tpr)


def test_tar_at_far_refuses_one_class_and_bad_input() -> None:
    with pytest.raises(InputError, match="0 imposter"):
        tar_at_far_ijb(np.ones(5), np.arange(5.0))
    with pytest.raises(InputError, match="0 genuine"):
        tar_at_far_ijb(np.zeros(5), np.arange(5.0))
    with pytest.raises(InputError, match=r"0 \(imposter\) or 1"):
        tar_at_far_ijb(np.array([0, 1, 2]), np.arange(3.0))
    with pytest.raises(InputError, match=r"pair scores: .*rows 1"):
        tar_at_far_ijb(np.array([0, 1, 1]), np.array([0, np.nan, 1]))
    with pytest.raises(InputError, match="2 label"):
        tar_at_far_ijb(np.array([0, 1]), np.arange(3.0))
