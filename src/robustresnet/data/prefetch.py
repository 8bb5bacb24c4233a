"""A background thread that prepares batches a few steps ahead and moves them to the device.

Reading a streamed extra set from disk (page faults, copies) would stall the training step; a
thread does it while the device computes. The queue is bounded (`depth` batches), so memory stays
flat; an error in the thread is raised in the consumer; `close` (or garbage collection of the
loader's iterator, which closes it) stops and joins the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

_BATCH, _END, _ERROR = range(3)
_POLL_S = 0.05  # how often a blocked producer looks for a stop request


class Prefetcher:
    """Iterate `batches` (tuples of CPU tensors) in a thread, each moved to `device` ahead."""

    def __init__(
        self,
        batches: Iterator[tuple[torch.Tensor, ...]],
        device: torch.device,
        *,
        depth: int = 2,
    ) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(batches, device), name="rrn-extra-prefetch", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        if self._stop.is_set():
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _BATCH:
            return value
        self.close()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the thread and wait for it; idempotent."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(_POLL_S)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _produce(self, batches: Iterator[tuple[torch.Tensor, ...]], device: torch.device) -> None:
        try:
            for batch in batches:
                # From pinned memory the copy is asynchronous; the consumer's work on the same
                # (default) stream is ordered after it, and the caching host allocator keeps the
                # pinned block until the copy is done.
                moved = tuple(t.to(device, non_blocking=True) for t in batch)
                if not self._put((_BATCH, moved)):
                    return
            self._put((_END, None))
        except BaseException as err:  # noqa: BLE001 - any failure is the consumer's to see
            self._put((_ERROR, err))

    def _put(self, item: tuple[int, object]) -> bool:
        """Queue `item` unless a stop is requested first; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False
