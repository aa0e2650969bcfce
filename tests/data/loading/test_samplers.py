from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from fmlkit.data.loading.samplers import MPerClassSampler, ResumableSampler, ShuffleSampler
from fmlkit.errors import ConfigError, InputError

# 7 classes of 1..12 images, in no particular order
LABELS = np.array([3, 0, 5, 1, 3, 0, 6, 2] * 3 + [4] * 12 + [6] * 5 + [1], dtype=np.int64)


def _samplers(world_size: int = 1, rank: int = 0, **kw: object) -> list[ResumableSampler]:
    return [
        ShuffleSampler(len(LABELS), seed=7, rank=rank, world_size=world_size, **kw),
        MPerClassSampler(LABELS, 2, 6, seed=7, rank=rank, world_size=world_size, **kw),
    ]


def _check_m_per_class(indices: list[int], labels: np.ndarray, m: int, batch_size: int) -> None:
    assert len(indices) % batch_size == 0
    for start in range(0, len(indices), batch_size):
        counts = Counter(labels[indices[start : start + batch_size]].tolist())
        assert len(counts) == batch_size // m and set(counts.values()) == {m}


def test_m_per_class_sampler_batches_hold_p_classes_of_m_images() -> None:
    sampler = MPerClassSampler(LABELS, 2, 6, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == sampler.batches * 6 > 0
    _check_m_per_class(indices, LABELS, 2, 6)


@given(
    counts=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    m=st.integers(1, 3),
    per_batch=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_m_per_class_sampler_any_class_sizes(
    counts: list[int], m: int, per_batch: int, seed: int
) -> None:
    per_batch = min(per_batch, len(counts))
    labels = np.repeat(np.arange(len(counts)), counts)
    sampler = MPerClassSampler(labels, m, per_batch * m, seed=seed)
    indices = list(sampler)
    _check_m_per_class(indices, labels, m, per_batch * m)
    # every image is seen but those of fewer than per_batch groups left over and of classes
    # bigger than batches·m
    assert len(counts) - len(set(labels[indices].tolist())) < per_batch
    unseen = len(labels) - len(set(indices))
    too_big = sum(max(0, c - sampler.batches * m) for c in counts)
    assert unseen <= (per_batch - 1) * m + too_big


def test_m_per_class_sampler_covers_a_balanced_dataset_exactly_once() -> None:
    labels = np.repeat(np.arange(6), 4)[np.random.default_rng(0).permutation(24)]
    sampler = MPerClassSampler(labels, 2, 6, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert sorted(sampler) == list(range(24))


def test_m_per_class_sampler_repeats_the_images_of_a_small_class_in_turn() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])  # m = 4: class 0 is too small
    sampler = MPerClassSampler(labels, 4, 8, seed=0)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        _check_m_per_class(indices, labels, 4, 8)
        sizes = Counter(labels.tolist())
        for start in range(0, len(indices), 4):  # a class's images cycled: as often ± 1
            group = indices[start : start + 4]
            counts = Counter(group).values()
            assert max(counts) - min(counts) <= 1
            assert len(counts) == min(4, sizes[int(labels[group[0]])])


@pytest.mark.parametrize("kind", [0, 1], ids=["shuffle", "m_per_class"])
def test_samplers_are_deterministic_given_seed_and_epoch(kind: int) -> None:
    a, b = _samplers()[kind], _samplers()[kind]
    first = list(a)
    assert list(b) == first and list(a) == first
    a.set_epoch(1)
    assert list(a) != first
    other_seed = (
        ShuffleSampler(len(LABELS), seed=8) if kind == 0 else MPerClassSampler(LABELS, 2, 6, seed=8)
    )
    assert list(other_seed) != first
    if kind == 0:
        assert sorted(first) == list(range(len(LABELS)))


@pytest.mark.parametrize("kind", [0, 1], ids=["shuffle", "m_per_class"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_samplers_give_ranks_disjoint_equal_shares(kind: int, world_size: int) -> None:
    ranks = [list(_samplers(world_size, rank)[kind]) for rank in range(world_size)]
    unit = 1 if kind == 0 else 6
    sizes = {len(r) for r in ranks}
    assert len(sizes) == 1 and sizes.pop() % unit == 0
    single = list(_samplers()[kind])
    units = [single[i : i + unit] for i in range(0, len(single), unit)]
    for rank, indices in enumerate(ranks):  # rank r takes units r, r + W, …
        assert indices == [i for u in units[rank::world_size][: len(indices) // unit] for i in u]
    if kind == 0:
        flat = [i for r in ranks for i in r]
        assert len(flat) == len(set(flat)) == len(LABELS) // world_size * world_size


def test_samplers_without_drop_last_fill_the_last_round_from_the_start() -> None:
    for kind in range(2):
        ranks = [list(_samplers(3, r, drop_last=False)[kind]) for r in range(3)]
        single = list(_samplers()[kind])
        assert len({len(r) for r in ranks}) == 1
        flat = {i for r in ranks for i in r}
        assert flat == set(single)  # everything, some twice
    shuffle = ShuffleSampler(10, seed=0, rank=1, world_size=3, drop_last=False)
    assert len(shuffle) == 4 and list(shuffle)[-1] == next(iter(ShuffleSampler(10, seed=0)))


@pytest.mark.parametrize("kind", [0, 1], ids=["shuffle", "m_per_class"])
@pytest.mark.parametrize("world_size", [1, 2])
def test_samplers_resume_mid_epoch_like_an_uninterrupted_run(kind: int, world_size: int) -> None:
    batch = 6
    uninterrupted: list[list[int]] = []
    for rank in range(world_size):
        sampler = _samplers(world_size, rank)[kind]
        uninterrupted.append([])
        for epoch in range(2):
            sampler.set_epoch(epoch)
            uninterrupted[rank] += list(sampler)
    for rank in range(world_size):
        sampler = _samplers(world_size, rank)[kind]
        sampler.set_epoch(1)  # killed after 2 batches of epoch 1
        done = list(sampler)[: 2 * batch]
        state = sampler.state_dict(consumed=2 * batch)
        assert state == {"epoch": 1, "position": 2 * batch * world_size}
        resumed = _samplers(world_size, rank)[kind]
        resumed.load_state_dict(state)
        resumed.set_epoch(1)  # the loop's usual call keeps the loaded position
        assert len(resumed) == len(sampler) - 2 * batch
        rest = list(resumed)
        epoch_1 = uninterrupted[rank][len(uninterrupted[rank]) // 2 :]
        assert done + rest == epoch_1
        resumed.set_epoch(2)
        assert len(list(resumed)) == len(sampler)


def test_samplers_resume_with_another_number_of_processes_continues_the_epoch() -> None:
    for kind in range(2):
        single = list(_samplers()[kind])
        first = _samplers(2, 0)[kind]
        state = first.state_dict(consumed=6)  # each of 2 ranks took one batch of 6
        rest = []
        for rank in range(3):
            sampler = _samplers(3, rank)[kind]
            sampler.load_state_dict(state)
            rest += list(sampler)
        unit = 3 * (1 if kind == 0 else 6)  # a round of 3 ranks
        assert len(rest) == (len(single) - 12) // unit * unit > 0
        assert Counter(rest) == Counter(single[12 : 12 + len(rest)])


def test_samplers_feed_a_dataloader() -> None:
    sampler = MPerClassSampler(LABELS, 3, 6, seed=0)
    loader = DataLoader(torch.arange(len(LABELS)), batch_size=6, sampler=sampler, drop_last=True)
    batches = [b.tolist() for b in loader]
    assert len(batches) == len(loader) == sampler.batches
    _check_m_per_class([i for b in batches for i in b], LABELS, 3, 6)


def test_samplers_reject_what_they_cannot_do() -> None:
    with pytest.raises(ConfigError, match="multiple of m"):
        MPerClassSampler(LABELS, 4, 6, seed=0)
    with pytest.raises(ConfigError, match="multiple of m"):
        MPerClassSampler(LABELS, 4, 2, seed=0)
    with pytest.raises(InputError, match="needs 8 classes"):
        MPerClassSampler(LABELS, 2, 16, seed=0)
    with pytest.raises(InputError, match="fewer than the 9 processes"):
        MPerClassSampler(np.repeat(np.arange(4), 4), 2, 4, seed=0, world_size=9)
    with pytest.raises(InputError, match="cannot be shared"):
        ShuffleSampler(3, seed=0, world_size=4)
    with pytest.raises(ValueError, match="rank 2"):
        ShuffleSampler(10, seed=0, rank=2, world_size=2)
    sampler = MPerClassSampler(LABELS, 2, 6, seed=0)
    with pytest.raises(ValueError, match="multiple of the batch"):
        sampler.state_dict(consumed=4)
    for position in (4, len(sampler) + 6, -6):  # another batch size, another dataset
        with pytest.raises(InputError, match="same data and batch size"):
            sampler.load_state_dict({"epoch": 0, "position": position})
