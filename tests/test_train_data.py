"""TokenDataset: batches are pure functions of (seed, step), process shards tile the global batch;
Prefetcher: in order, overlapping, stops cleanly, raises the producer's errors."""

import threading
import time

import numpy as np
import pytest

from xtts_jax.errors import UserError
from xtts_jax.text.prepare import prepare_embedded
from xtts_jax.train.data import Prefetcher, TokenDataset


@pytest.fixture
def ramp(tmp_path):
    """A token file whose token at offset i is i % 50000: every window shows where it starts."""
    path = tmp_path / "train.bin"
    (np.arange(5000) % 50000).astype(np.uint16).tofile(path)
    return path


def test_batch_is_windows_of_the_file(ramp):
    data = TokenDataset(ramp, block_size=16)
    batch = data.batch(seed=0, step=0, batch_size=8)
    assert batch.shape == (8, 17) and batch.dtype == np.int32
    reference = np.fromfile(ramp, dtype=np.uint16).astype(np.int32)
    for row, start in zip(batch, data.starts(0, 0, 8)):
        np.testing.assert_array_equal(row, reference[start:start + 17])


def test_batch_is_a_pure_function_of_seed_and_step(ramp):
    a, b = TokenDataset(ramp, 16), TokenDataset(ramp, 16)
    # A fresh dataset (a resumed run) replays the same batches, whatever was drawn before.
    first = [a.batch(1, step, 4) for step in range(5)]
    b.batch(1, 99, 4)
    np.testing.assert_array_equal(b.batch(1, 3, 4), first[3])
    np.testing.assert_array_equal(a.batch(1, 3, 4), first[3])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(a.batch(2, 0, 4), first[0])


def test_window_starts_cover_every_offset_and_no_more(tmp_path):
    path = tmp_path / "short.bin"
    np.arange(10, dtype=np.uint16).tofile(path)
    data = TokenDataset(path, block_size=7)  # 10 tokens: windows of 8 start at 0, 1 or 2
    starts = np.concatenate([data.starts(0, step, 16) for step in range(20)])
    assert set(starts.tolist()) == {0, 1, 2}
    exact = TokenDataset(path, block_size=9)  # exactly one block
    np.testing.assert_array_equal(exact.batch(0, 0, 2), np.tile(np.arange(10), (2, 1)))


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_shards_tile_the_global_batch(ramp, process_count):
    data = TokenDataset(ramp, 32)
    whole = data.batch(7, 11, 8)
    parts = [data.batch(7, 11, 8, process_index=i, process_count=process_count) for i in range(process_count)]
    assert all(p.shape == (8 // process_count, 33) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_errors_name_file_and_sizes(tmp_path, ramp):
    with pytest.raises(UserError, match="nothere.bin does not exist"):
        TokenDataset(tmp_path / "nothere.bin", 8)
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(UserError, match="empty.bin is empty"):
        TokenDataset(tmp_path / "empty.bin", 8)
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(UserError, match="odd.bin has 3 bytes"):
        TokenDataset(tmp_path / "odd.bin", 8)
    with pytest.raises(UserError, match=r"train.bin holds 5000 tokens, fewer than one block of block_size \+ 1 = 5001"):
        TokenDataset(ramp, 5000)
    data = TokenDataset(ramp, 8)
    with pytest.raises(UserError, match="batch size 6 must be a positive multiple of the process count 4"):
        data.batch(0, 0, 6, process_index=0, process_count=4)
    with pytest.raises(UserError, match="process_index 2"):
        data.batch(0, 0, 4, process_index=2, process_count=2)


def test_on_a_prepared_corpus(tmp_path):
    meta = prepare_embedded(tmp_path, n_stories=40, seed=1, val_fraction=0.1, workers=1, progress=False)
    train, val = TokenDataset(tmp_path / "train.bin", 64), TokenDataset(tmp_path / "val.bin", 64)
    batch = train.batch(0, 0, 4)
    assert batch.shape == (4, 65) and 0 <= batch.min() and batch.max() <= 50256
    assert (len(train), len(val)) == (meta["train"]["tokens"], meta["val"]["tokens"])


def test_prefetcher_yields_steps_in_order(ramp):
    data = TokenDataset(ramp, 8)
    with Prefetcher(lambda step: data.batch(3, step, 2), start=5, end=12) as batches:
        got = list(batches)
    assert [step for step, _ in got] == list(range(5, 12))
    for step, batch in got:
        np.testing.assert_array_equal(batch, data.batch(3, step, 2))


def test_prefetcher_overlaps_with_the_consumer():
    def slow_batch(step):
        time.sleep(0.05)
        return step

    began = time.perf_counter()
    for _ in Prefetcher(slow_batch, 0, 10):
        time.sleep(0.05)  # "device compute"
    elapsed = time.perf_counter() - began
    assert elapsed < 0.85, f"10 steps of 50 ms produce + 50 ms consume took {elapsed:.2f} s: no overlap"


def test_prefetcher_stops_early_and_stays_bounded():
    made = []
    fetcher = Prefetcher(lambda step: made.append(step) or step, 0, 1000, depth=2)
    for step, _ in fetcher:
        if step == 3:
            break
    fetcher.close()
    assert not fetcher.running
    # depth 2 queue + one batch being made + one waiting to go in: never far ahead of the consumer.
    assert len(made) <= 8
    assert threading.active_count() < 50


def test_prefetcher_raises_the_producers_error():
    def broken(step):
        if step == 2:
            raise UserError("token file x.bin vanished")
        return step

    seen = []
    with pytest.raises(UserError, match="vanished"):
        with Prefetcher(broken, 0, 10) as batches:
            for step, _ in batches:
                seen.append(step)
    assert seen == [0, 1]
