"""Micro-batching: concurrent requests share a batch; nothing waits forever, errors reach everyone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from feedrank.serve.batcher import MicroBatcher
from feedrank.serve.feeds import Feed, FeedItem, FeedRequest

TIMES = {"queue": 0.0, "total": 1.0}


class Gated:
    """A batch function that records each batch and holds the first until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, requests: Sequence[FeedRequest], start: float) -> list[Feed]:
        self.batches.append([r.user_id for r in requests])
        if len(self.batches) == 1:
            self.release.wait()
        if self.fail_on in self.batches[-1]:
            raise RuntimeError("scoring broke")
        return [
            Feed(
                r.user_id,
                [FeedItem(f"for-{r.user_id}", 1.0)],
                {"queue": 0.0, "total": 1.0},
                [],
                "miss",
                True,
                "v",
            )
            for r in requests
        ]


Outcome = dict[str, Feed | BaseException]


def run_all(batcher: MicroBatcher, requests: list[FeedRequest], gate: Gated) -> Outcome:
    """Submit the first request, wait until it is being computed, queue the rest, then release."""
    out: Outcome = {}

    def submit(request: FeedRequest) -> None:
        try:
            out[request.user_id] = batcher.submit(request)
        except RuntimeError as exc:
            out[request.user_id] = exc

    threads = [threading.Thread(target=submit, args=(r,)) for r in requests]
    threads[0].start()
    while not gate.batches:  # the first batch is running (held by the gate)
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while batcher.waiting < len(requests) - 1:  # every later request is queued
        time.sleep(0.001)
    gate.release.set()
    for t in threads:
        t.join()
    return out


def test_requests_that_arrive_meanwhile_share_one_batch() -> None:
    gate = Gated()
    batcher = MicroBatcher(gate, max_batch=16)
    out = run_all(batcher, [FeedRequest(f"u{i}") for i in range(6)], gate)
    assert gate.batches[0] == ["u0"] and sorted(gate.batches[1]) == ["u1", "u2", "u3", "u4", "u5"]
    assert len(gate.batches) == 2 and batcher.batches == 2 and batcher.batched == 6
    for user, feed in out.items():
        assert isinstance(feed, Feed) and feed.user_id == user and feed.items[0].item_id == f"for-{user}"
        assert feed.timings_ms["total"] >= feed.timings_ms["queue"] >= 0
    later = out["u3"]
    assert isinstance(later, Feed) and later.timings_ms["queue"] > 0  # it waited for the first batch


def test_batches_are_bounded_and_only_mix_requests_of_one_k_and_time() -> None:
    gate = Gated()
    batcher = MicroBatcher(gate, max_batch=2)
    requests = [FeedRequest("u0"), FeedRequest("a", k=5), FeedRequest("b"), FeedRequest("c", k=5)]
    requests += [FeedRequest("d"), FeedRequest("e", now_us=7), FeedRequest("f")]
    out = run_all(batcher, requests, gate)
    assert all(isinstance(f, Feed) for f in out.values()) and len(out) == 7
    keys = {r.user_id: (r.k, r.now_us) for r in requests}
    for batch in gate.batches:
        assert len(batch) <= 2 and len({keys[u] for u in batch}) == 1
    assert sorted(u for b in gate.batches for u in b) == sorted(keys)


def test_an_error_reaches_every_request_of_its_batch_and_the_batcher_goes_on() -> None:
    gate = Gated(fail_on="bad")
    batcher = MicroBatcher(gate)
    out = run_all(batcher, [FeedRequest("u0"), FeedRequest("bad"), FeedRequest("with-bad")], gate)
    assert isinstance(out["u0"], Feed)
    assert isinstance(out["bad"], RuntimeError) and isinstance(out["with-bad"], RuntimeError)
    assert batcher.submit(FeedRequest("after")).user_id == "after"


@pytest.mark.parametrize("running", [1, 2])
def test_at_most_max_running_batches_at_once(running: int) -> None:
    busy, most, lock = [0], [0], threading.Lock()

    def slow(requests: Sequence[FeedRequest], start: float) -> list[Feed]:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.005)
        with lock:
            busy[0] -= 1
        return [Feed(r.user_id, [], {}, [], "miss", True, "v") for r in requests]

    batcher = MicroBatcher(slow, max_batch=1, max_running=running)
    threads = [threading.Thread(target=batcher.submit, args=(FeedRequest(f"u{i}"),)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.batched == 12 and 1 <= most[0] <= running
