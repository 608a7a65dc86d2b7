"""tts_zoo.data.batching: DDP shards are disjoint, cover the data and step in lockstep; bucketing pads
less than random batching; the order is a function of (seed, epoch)."""

from __future__ import annotations

import random

import pytest

from tts_zoo.data.batching import LengthBucketSampler, padding_ratio, random_batches


def lengths_of(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(40, 900) for _ in range(n)]


def shards(lengths, world, **kw) -> list[list[list[int]]]:
    return [list(LengthBucketSampler(lengths, num_replicas=world, rank=r, **kw)) for r in range(world)]


@pytest.mark.parametrize("n", [1, 5, 37, 100, 257])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_shards_are_disjoint_cover_and_step_together(n, world, batch_size):
    lengths = lengths_of(n)
    per_rank = shards(lengths, world, batch_size=batch_size, bucket_batches=4, seed=7)
    assert len({len(s) for s in per_rank}) == 1  # the same number of steps on every rank
    items = [i for s in per_rank for b in s for i in b]
    assert all(0 < len(b) <= batch_size for s in per_rank for b in s)
    if n >= world and (batch_size > 1 or n % world == 0):
        assert sorted(items) == list(range(n))  # disjoint and covering: every item exactly once
    else:  # no equal-step split without repeats exists: covering, a few repeats
        assert set(items) == set(range(n)) and len(items) - n < world


def test_drop_last_gives_full_disjoint_batches():
    lengths = lengths_of(103)
    per_rank = shards(lengths, 2, batch_size=8, drop_last=True)
    assert len(per_rank[0]) == len(per_rank[1]) == 6  # 12 full batches of 8 (96 items) over 2 ranks
    items = [i for s in per_rank for b in s for i in b]
    assert all(len(b) == 8 for s in per_rank for b in s) and len(set(items)) == len(items) == 96


def test_epoch_order_is_deterministic_and_changes_with_set_epoch():
    lengths = lengths_of(200)
    a = LengthBucketSampler(lengths, 8, num_replicas=2, rank=1, seed=3)
    b = LengthBucketSampler(lengths, 8, num_replicas=2, rank=1, seed=3)
    assert list(a) == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b) and len(a) == len(list(a))
    assert list(LengthBucketSampler(lengths, 8, seed=4)) != list(LengthBucketSampler(lengths, 8, seed=3))


def test_bucketing_pads_less_than_random_batching():
    lengths = lengths_of(2000, seed=1)
    bucketed = list(LengthBucketSampler(lengths, 16, bucket_batches=32, seed=0))
    bucket_pad = padding_ratio(bucketed, lengths)
    random_pad = padding_ratio(random_batches(len(lengths), 16, seed=0), lengths)
    assert random_pad > 0.3 and bucket_pad < 0.05 and bucket_pad < random_pad / 5
    assert padding_ratio([[0, 1]], [10, 5]) == pytest.approx(0.25)


def test_unshuffled_is_sorted_longest_first_and_rank_is_checked():
    lengths = lengths_of(50)
    batches = list(LengthBucketSampler(lengths, 10, shuffle=False))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True) or [max(lengths[i] for i in b) for b in batches] == sorted(
        (max(lengths[i] for i in b) for b in batches), reverse=True)
    with pytest.raises(ValueError, match="rank 2"):
        LengthBucketSampler(lengths, 4, num_replicas=2, rank=2)
