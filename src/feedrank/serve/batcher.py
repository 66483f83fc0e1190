"""Concurrent feed requests served as one batch: micro-batching in front of `recommend_batch`.

A request that arrives while feeds are being computed does not wait for a slot of its own: it
joins the queue, and the next batch takes every queued request that can share it (the same `k`
and request time) in arrival order, up to `max_batch`. The thread of a waiting request computes
the batch (leader/followers: no extra thread, nothing to shut down), at most `max_running`
batches at once. One batch shares what a request would compute alone — the trending and fresh
lists, the counters and vectors of the candidates, the calls into torch and faiss — and holds
the interpreter lock in one thread instead of contending for it in eight.

Each feed reports its own time: `queue` is how long its request waited before its batch started,
`total` runs from its arrival to the end of its batch; the batch's deadline runs from the
arrival of its oldest request, so no request in it waited longer than the deadline accounts for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from feedrank.serve.feeds import Feed, FeedRequest

# (requests, arrival of the oldest one (perf_counter)) → one feed per request, in order
RunBatch = Callable[[Sequence[FeedRequest], float], list[Feed]]


@dataclass(eq=False)
class _Waiting:
    request: FeedRequest
    arrived: float
    feed: Feed | None = None
    error: BaseException | None = None
    done: bool = False


class MicroBatcher:
    """Serves `submit` calls from many threads in batches of up to `max_batch`; thread-safe."""

    def __init__(self, run: RunBatch, max_batch: int = 16, max_running: int = 1) -> None:
        self._run = run
        self.max_batch = max(1, max_batch)
        self.max_running = max(1, max_running)
        self._cond = threading.Condition()
        self._queue: list[_Waiting] = []
        self._running = 0
        self.batches = 0  # batches computed so far
        self.batched = 0  # requests served in them

    @property
    def waiting(self) -> int:
        """Requests queued for a batch now."""
        with self._cond:
            return len(self._queue)

    def submit(self, request: FeedRequest, arrived: float | None = None) -> Feed:
        """The feed for `request`, computed in a batch with whatever else is waiting."""
        mine = _Waiting(request, time.perf_counter() if arrived is None else arrived)
        with self._cond:
            self._queue.append(mine)
            while not mine.done:
                if self._running >= self.max_running or not self._queue:
                    self._cond.wait()
                    continue
                batch = self._take()
                self._running += 1
                self._cond.release()
                try:
                    self._serve(batch)
                finally:
                    self._cond.acquire()
                    self._running -= 1
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.feed is not None
        return mine.feed

    def _take(self) -> list[_Waiting]:
        """The oldest request and every later one that can share its batch (lock held)."""
        head = self._queue[0].request
        key = (head.k, head.now_us)
        batch = [w for w in self._queue if (w.request.k, w.request.now_us) == key][: self.max_batch]
        taken = set(map(id, batch))
        self._queue = [w for w in self._queue if id(w) not in taken]
        return batch

    def _serve(self, batch: list[_Waiting]) -> None:
        began = time.perf_counter()
        try:
            feeds = self._run([w.request for w in batch], min(w.arrived for w in batch))
            ended = time.perf_counter()
            for waiting, feed in zip(batch, feeds, strict=True):
                timings = dict(feed.timings_ms)
                timings["queue"] = (began - waiting.arrived) * 1e3
                timings["total"] = (ended - waiting.arrived) * 1e3
                waiting.feed = replace(feed, timings_ms=timings)
        except BaseException as exc:  # every request of the batch gets the error, none hangs
            for waiting in batch:
                waiting.error = exc
        finally:
            for waiting in batch:
                waiting.done = True
            self.batches += 1
            self.batched += len(batch)
