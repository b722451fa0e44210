"""Read ahead in a background thread while the caller computes.

Reading an HDF5 chunk and turning N×C×H×W into N×H×W×C is single-threaded Python/numpy
work; TensorFlow sits idle meanwhile. Reading the next batch while the current one is on
the CPU cores keeps both cores busy (h5py and numpy copies release the GIL for the bulk)."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a worker thread. An
    exception in the producer is raised here, at the item where it happened; closing this
    generator early (cancel, error downstream) stops the worker."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(obj) -> bool:
        while not stop.is_set():
            try:
                q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, who re-raises it
            put(_Failed(e))
            return
        put(_DONE)

    worker = threading.Thread(target=work, name="prunelab-read", daemon=True)
    worker.start()
    try:
        while True:
            got = q.get()
            if got is _DONE:
                return
            if isinstance(got, _Failed):
                raise got.exc
            yield got
    finally:
        stop.set()
        worker.join(timeout=5)
