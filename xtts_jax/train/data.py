"""Batches of token windows from a ``train.bin`` / ``val.bin`` made by ``xtts_jax.text.prepare``.

A batch is a pure function of ``(seed, step)``: the window starts come from a numpy Generator seeded with
``[seed, step]``, so a run resumed at step k sees exactly the batches the uninterrupted run saw, with no
loader state to checkpoint. As nanoGPT's ``get_batch``, windows start anywhere (not at document
boundaries) and hold ``block_size + 1`` tokens: inputs are ``[:, :-1]``, targets ``[:, 1:]``.

Multi-host: every process draws the same global starts and reads only its own rows, a contiguous slice
``[process_index * rows, (process_index + 1) * rows)``, so the union over processes is the global batch
(the layout ``jax.make_array_from_process_local_data`` expects for a batch sharded over processes).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from jaxtyping import Int32, Int64

from xtts_jax.errors import UserError

TOKEN_DTYPE = np.uint16  # GPT-2's 50,257 ids fit; as nanoGPT's prepare.py


class TokenDataset:
    """Random ``block_size + 1`` windows over a memory-mapped uint16 token file."""

    def __init__(self, path_bin, block_size: int):
        self.path = Path(path_bin)
        self.block_size = int(block_size)
        if self.block_size < 1:
            raise UserError(f"block_size {block_size} must be at least 1")
        if not self.path.is_file():
            raise UserError(f"token file {self.path} does not exist; make it with python -m xtts_jax.text.prepare")
        size = self.path.stat().st_size
        if size == 0:
            raise UserError(f"token file {self.path} is empty")
        if size % np.dtype(TOKEN_DTYPE).itemsize:
            raise UserError(f"token file {self.path} has {size} bytes, not a whole number of uint16 tokens")
        self.tokens = np.memmap(self.path, dtype=TOKEN_DTYPE, mode="r")
        if len(self.tokens) < self.block_size + 1:
            raise UserError(f"token file {self.path} holds {len(self.tokens)} tokens, fewer than one block of "
                            f"block_size + 1 = {self.block_size + 1}; use a smaller block_size or more text")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_windows(self) -> int:
        """How many distinct window starts there are."""
        return len(self.tokens) - self.block_size

    def starts(self, seed: int, step: int, batch_size: int) -> Int64[np.ndarray, " batch"]:
        """Token offsets of the global batch's windows for ``(seed, step)``."""
        if seed < 0 or step < 0:
            raise UserError(f"seed {seed} and step {step} must be non-negative")
        rng = np.random.default_rng([seed, step])
        return rng.integers(0, self.n_windows, size=batch_size, dtype=np.int64)

    def batch(self, seed: int, step: int, batch_size: int, process_index: int = 0,
              process_count: int = 1) -> Int32[np.ndarray, "rows window"]:
        """This process's rows of the global batch for ``(seed, step)``: int32 ``[batch_size // process_count,
        block_size + 1]``; with one process, the whole batch."""
        if batch_size < 1 or batch_size % process_count:
            raise UserError(f"batch size {batch_size} must be a positive multiple of the process count {process_count}")
        if not 0 <= process_index < process_count:
            raise UserError(f"process_index {process_index} is outside [0, {process_count})")
        rows = batch_size // process_count
        starts = self.starts(seed, step, batch_size)[process_index * rows:(process_index + 1) * rows]
        # One gather from the memmap reads only the pages under these windows.
        index = starts[:, None] + np.arange(self.block_size + 1)
        return self.tokens[index].astype(np.int32)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


class Prefetcher:
    """Make ``make_batch(step)`` for steps ``start..end-1`` in a background thread, ``depth`` ahead.

    Iterating yields ``(step, batch)`` in order. ``make_batch`` may also put the batch on devices
    (``jax.device_put`` / ``make_array_from_process_local_data``) so the copy overlaps compute too. An error in
    ``make_batch`` is raised in the consumer. Use as a context manager, or call ``close()``, to stop early::

        with Prefetcher(lambda s: data.batch(seed, s, batch_size), start=resume_step, end=max_steps) as batches:
            for step, batch in batches:
                state, metrics = train_step(state, batch)
    """

    def __init__(self, make_batch: Callable[[int], Any], start: int, end: int, depth: int = 2):
        if depth < 1:
            raise UserError(f"prefetch depth {depth} must be at least 1")
        self.make_batch, self.start, self.end = make_batch, start, end
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="xtts_jax-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Put ``item``, giving up when stopped; True when it went in."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        for step in range(self.start, self.end):
            if self._stop.is_set():
                return
            try:
                item = (step, self.make_batch(step))
            except BaseException as e:  # handed to the consumer, which raises it
                self._put(_Failure(e))
                return
            if not self._put(item):
                return
        self._put(_DONE)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            while not self._stop.is_set():
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread and wait for it; safe to call twice."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WaveSegments:
    """Random fixed-length waveform segments ``[batch, segment]`` of a corpus (DVAE, vocoder training);
    batch ``step`` depends only on (seed, step), as ``TokenDataset.batch``."""

    def __init__(self, waves: list[np.ndarray], batch_size: int, segment: int, seed: int):
        if not waves:
            raise UserError("no usable audio in the dataset.")
        self.waves, self.batch_size, self.segment, self.seed = waves, batch_size, segment, seed

    def __call__(self, step: int) -> np.ndarray:
        return self._rows(step)[0]

    def _rows(self, step: int, extra: int = 0) -> tuple[np.ndarray, list[int], np.random.Generator]:
        """The batch with ``extra`` zero columns after each segment, the utterance of each row, the rng."""
        rng = np.random.default_rng((self.seed, step))
        out = np.zeros((self.batch_size, self.segment + extra), np.float32)
        picked = []
        for row in range(self.batch_size):
            picked.append(int(rng.integers(len(self.waves))))
            w = self.waves[picked[-1]]
            start = rng.integers(max(len(w) - self.segment, 0) + 1)
            piece = w[start : start + self.segment]
            out[row, : len(piece)] = piece  # short utterances end in digital silence
        return out, picked, rng


class WaveSegmentsWithReference(WaveSegments):
    """:class:`WaveSegments` for a speaker-conditioned decoder: each row is a segment followed by
    the ``features`` (``[utterances, F]``) of another utterance of the same speaker, drawn per
    batch (the segment's own utterance only when its speaker has no other): ``[batch, segment + F]``."""

    def __init__(self, waves: list[np.ndarray], speakers: list[str], features: np.ndarray, batch_size: int,
                 segment: int, seed: int):
        super().__init__(waves, batch_size, segment, seed)
        if len(speakers) != len(waves) or len(features) != len(waves):
            raise UserError(f"{len(waves)} utterances, {len(speakers)} speakers and {len(features)} feature rows")
        self.features = np.asarray(features, np.float32)
        by_speaker: dict[str, list[int]] = {}
        for i, s in enumerate(speakers):
            by_speaker.setdefault(s, []).append(i)
        self.others = [[j for j in by_speaker[s] if j != i] or [i] for i, s in enumerate(speakers)]

    def __call__(self, step: int) -> np.ndarray:
        width = self.features.shape[1]
        out, picked, rng = self._rows(step, width)
        for row, i in enumerate(picked):
            out[row, self.segment :] = self.features[self.others[i][rng.integers(len(self.others[i]))]]
        return out
