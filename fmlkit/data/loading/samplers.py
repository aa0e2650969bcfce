"""Samplers for training: shuffled or m-per-class, sharded over ranks, resumable mid-epoch.

Both samplers draw each epoch's **global order** from ``(seed, epoch)`` alone, whatever the
number of processes, and deal it to the ranks: `ShuffleSampler` deals indices round-robin (rank
r takes items r, r + W, …), `MPerClassSampler` deals whole batches (rank r takes batches r,
r + W, …). Every rank gets the same number of indices, so the same number of batches: with
``drop_last`` the last indices (batches) that do not fill a round are left out, without it the
round is filled with ones from the start of the epoch. Ranks are disjoint except for that
filling.

**Resuming.** ``position`` counts the indices of the global order consumed so far in the epoch
(across all ranks). The training loop knows how many indices it has taken, the sampler does not
(DataLoader workers prefetch), so it passes them in: ``sampler.state_dict(consumed=k * B)``
after k batches of B per rank gives ``{"epoch", "position"}``; `load_state_dict` makes the next
iteration start there. The position is in global units, so a checkpoint taken with one number
of processes resumes with another (exactly the same indices when the number is the same).

``set_epoch(e)`` for a new epoch starts at position 0; for the epoch already set (e.g. the
loaded one) it keeps the position, so a loop that calls ``set_epoch`` before each epoch
resumes correctly. ``len(sampler)`` counts the indices of the next iteration on this rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fmlkit.errors import ConfigError, InputError


class ResumableSampler:
    """Shared logic: epoch, start position, sharding and state. Subclasses define the epoch's
    global order (`global_order`) and the unit it is dealt in (``unit`` indices)."""

    def __init__(
        self, *, seed: int, rank: int, world_size: int, drop_last: bool, unit: int
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of world_size {world_size} ranks")
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last, self.unit = drop_last, unit
        self.size = 0  # indices in an epoch's global order: set by the subclass
        self.epoch = 0
        self.start = 0  # global position where the next iteration begins

    def global_order(self, epoch: int) -> np.ndarray:
        """The epoch's indices in order, a multiple of ``unit`` long (same for every rank)."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Iterate over ``epoch`` next: from its start, or from the loaded position if it is
        the epoch already set."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def state_dict(self, consumed: int) -> dict[str, int]:
        """The state after this rank took ``consumed`` indices of the current iteration
        (batches × per-rank batch size, counting items dropped by the collate)."""
        if consumed % self.unit:
            raise ValueError(f"consumed={consumed} is not a multiple of the batch ({self.unit})")
        position = min(self.start + consumed * self.world_size, self.size)  # less any filling
        return {"epoch": self.epoch, "position": position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`: epoch ``state["epoch"]`` from ``state["position"]``."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if position % self.unit or not 0 <= position <= self.size:
            raise InputError(
                f"cannot resume at position {position} of an epoch of {self.size} indices in "
                f"units of {self.unit}: was the checkpoint made with another dataset or "
                "batch size? Resume with the same data and batch size."
            )
        self.epoch, self.start = epoch, position

    def _rank_indices(self) -> np.ndarray:
        order = self.global_order(self.epoch)
        units = order.reshape(-1, self.unit)
        rest = units[self.start // self.unit :]
        rounds, extra = divmod(len(rest), self.world_size)
        if extra and not self.drop_last:
            fill = np.resize(units, (self.world_size - extra, self.unit))
            rest = np.concatenate([rest, fill])
            rounds += 1
        return rest[self.rank : rounds * self.world_size : self.world_size].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._rank_indices().tolist())

    def __len__(self) -> int:
        rest = (self.size - self.start) // self.unit
        rounds = rest // self.world_size if self.drop_last else -(-rest // self.world_size)
        return rounds * self.unit


class ShuffleSampler(ResumableSampler):
    """A random permutation of ``range(n)`` per epoch (numpy, seeded by (seed, epoch)),
    sharded over ranks, resumable mid-epoch (see the module docstring).

    Args:
        n: dataset size.
        seed: the permutation of epoch e is a function of (seed, e).
        rank, world_size: this process among the data-parallel processes.
        drop_last: leave out the last n mod world_size indices rather than repeat some.
    """

    def __init__(
        self, n: int, *, seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = True
    ) -> None:
        super().__init__(seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, unit=1)
        if n < world_size and drop_last:
            raise InputError(f"{n} items cannot be shared by {world_size} processes")
        self.size = n

    def global_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)


class MPerClassSampler(ResumableSampler):
    """Batches of ``batch_size // m`` different classes with ``m`` images each, for pair and
    proxy losses; sharded over ranks, resumable mid-epoch (see the module docstring).

    Each epoch (seeded by (seed, epoch)): every class's images in random order are cut into
    groups of ``m``; a class's last group is filled up with its first images again, so a class
    with fewer than ``m`` images repeats them (cyclically) to make a group. Classes in random
    order, their groups laid end to end, are dealt column-wise into B batches of
    P = batch_size // m groups: group j goes to batch j mod B, so the groups of a class land in
    different batches. B = ⌊groups / P⌋, and a class never has more than B groups (a larger
    class gives a random B·m of its images), so every batch holds P distinct classes. An epoch
    therefore shows every image of every class that fits, less fewer than P groups left over,
    in B batches (the same B every epoch). Batches are then shuffled and dealt to the ranks.

    Args:
        labels: class of each dataset item (any integers).
        m: images per class in a batch.
        batch_size: indices per batch on each rank (a multiple of ``m``).
        seed, rank, world_size, drop_last: as for `ShuffleSampler` (batches are dealt).

    Raises:
        ConfigError: ``batch_size`` is not a positive multiple of ``m``.
        InputError: fewer classes than ``batch_size // m``, or fewer batches than ranks.
    """

    def __init__(
        self,
        labels: np.ndarray,
        m: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if m < 1 or batch_size < m or batch_size % m:
            raise ConfigError(
                f"m_per_class: batch_size must be a positive multiple of m, found batch_size "
                f"{batch_size} and m {m}; change one of them"
            )
        super().__init__(
            seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, unit=batch_size
        )
        self.m, self.per_batch = m, batch_size // m
        _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
        if len(counts) < self.per_batch:
            raise InputError(
                f"m_per_class: a batch of {batch_size} with m {m} needs {self.per_batch} classes, "
                f"the dataset has {len(counts)}; lower batch_size or raise m"
            )
        self._codes, self._counts = codes, counts
        self._class_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.groups, self.batches = _group_plan(counts, m, self.per_batch)
        self.size = self.batches * batch_size
        if self.batches < world_size and drop_last:
            raise InputError(
                f"m_per_class: an epoch has {self.batches} batches of {batch_size}, fewer than "
                f"the {world_size} processes; lower batch_size"
            )

    def global_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        classes = len(self._counts)
        shuffled = rng.permutation(len(self._codes))  # then grouped by class (a stable sort)
        order = shuffled[np.argsort(self._codes[shuffled], kind="stable")]
        # groups laid end to end, classes in random order: (class, group number) per group
        class_order = rng.permutation(classes)
        group_class = np.repeat(class_order, self.groups[class_order])
        first = np.concatenate([[0], np.cumsum(self.groups[class_order])[:-1]])
        group_number = np.arange(len(group_class)) - np.repeat(first, self.groups[class_order])
        used = self.batches * self.per_batch
        group_class, group_number = group_class[:used], group_number[:used]
        # items of each group: the class's (cycled) items group_number·m .. +m
        offsets = group_number[:, None] * self.m + np.arange(self.m)
        within = offsets % self._counts[group_class][:, None]
        items = order[self._class_start[group_class][:, None] + within]  # (used, m)
        # group j to batch j mod B, then batches in random order
        batches = items.reshape(self.per_batch, self.batches, self.m).transpose(1, 0, 2)
        return batches[rng.permutation(self.batches)].reshape(-1)


def _group_plan(counts: np.ndarray, m: int, per_batch: int) -> tuple[np.ndarray, int]:
    """Groups per class (⌈count / m⌉, capped at the number of batches) and that number of
    batches, ⌊groups / per_batch⌋, found together (capping can lower the batch count)."""
    groups = -(-counts // m)
    batches = int(groups.sum()) // per_batch
    while True:
        capped = np.minimum(groups, batches)
        fewer = int(capped.sum()) // per_batch
        if fewer == batches:
            return capped, batches
        batches = fewer
