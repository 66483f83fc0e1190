"""ReadWriteLock: readers share, a writer excludes everyone, a waiting writer holds off new readers."""

from __future__ import annotations

import threading
import time

from feedrank.index.rwlock import ReadWriteLock


def test_readers_share_and_writers_wait_for_them() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    wrote = threading.Event()

    def writer() -> None:
        with lock.write():
            events.append("write")
        wrote.set()

    with lock.read(), lock.read():  # two readers at once: no deadlock
        thread = threading.Thread(target=writer)
        thread.start()
        assert not wrote.wait(0.2)  # the writer waits for both readers
        events.append("read")
    thread.join(5)
    assert events == ["read", "write"]


def test_a_waiting_writer_goes_before_later_readers() -> None:
    lock = ReadWriteLock()
    order: list[str] = []
    writer_waiting = threading.Event()

    def writer() -> None:
        writer_waiting.set()
        with lock.write():
            order.append("write")

    def late_reader() -> None:
        with lock.read():
            order.append("late read")

    with lock.read():
        w = threading.Thread(target=writer)
        w.start()
        writer_waiting.wait(5)
        while not lock._writers_waiting:  # until the writer is queued on the lock
            time.sleep(0.01)
        r = threading.Thread(target=late_reader)
        r.start()
        time.sleep(0.1)
        assert order == []  # neither the writer nor the later reader got in
    w.join(5)
    r.join(5)
    assert order == ["write", "late read"]
