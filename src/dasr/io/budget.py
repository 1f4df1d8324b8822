"""A byte budget shared by concurrent image decodes, served in submission order.

The extraction decodes images in worker threads ahead of the network. Each decode reserves
what it will allocate (:func:`dasr.io.pixels.decode_need`, from the header) before decoding,
gives back all but its result when the pixels are converted, and the consumer gives back the
result once it is done with it. Reservations are granted strictly in ticket order (the order
the images were submitted, which is the order they are consumed), so a large image waiting for
room can never be starved, nor deadlocked behind later images whose results wait for it. An
image that needs more than the whole budget is refused as an :class:`ImageError`.
"""

from __future__ import annotations

import threading

__all__ = ["DEFAULT_DECODE_BUDGET", "DecodeBudget"]

# 1.5 GiB: the largest legal image (MAX_PIXELS = 179 Mpx, RGBA) needs 7 bytes per pixel plus
# 64 MiB, 1.32 GB, so every image under the pixel guard fits alone (except WebP, 17 bytes per
# pixel, which fits up to about 90 Mpx); ordinary photos (a few Mpx) need about 100 MB and decode
# concurrently.
DEFAULT_DECODE_BUDGET: int = 3 << 29


class DecodeBudget:
    """Bytes reserved by decodes in flight and by decoded images not yet consumed.

    Args:
        total: the budget in bytes (positive).

    Raises:
        ValueError: ``total`` is not a positive integer.
    """

    def __init__(self, total: int = DEFAULT_DECODE_BUDGET) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"the decode budget must be a positive number of bytes, got {total!r}")
        self.total = total
        self.free = total
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0
        self._finished: set[int] = set()
        self._closed = False

    def ticket(self) -> int:
        """A place in the queue, taken when the decode is submitted (in consumption order).

        Returns:
            The ticket; pass it to :meth:`acquire`, and to :meth:`settle` when the decode ends.
        """
        with self._cond:
            self._issued += 1
            return self._issued - 1

    def _advance(self) -> None:
        while self._serving in self._finished:
            self._finished.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def acquire(self, ticket: int, nbytes: int) -> bool:
        """Wait until it is this ticket's turn and ``nbytes`` are free, then reserve them.

        Args:
            ticket: from :meth:`ticket`.
            nbytes: bytes to reserve.

        Returns:
            True if reserved; False (nothing reserved, the turn passes) when ``nbytes`` is over
            the whole budget, so that the caller refuses the image, or when the budget was
            closed (the consumer is gone; the result is discarded).
        """
        with self._cond:
            if nbytes > self.total or self._closed:
                self._finished.add(ticket)
                self._advance()
                return False
            while not (self._serving == ticket and self.free >= nbytes):
                if self._closed:
                    return False
                self._cond.wait()
            self.free -= nbytes
            self._finished.add(ticket)
            self._advance()
            return True

    def settle(self, ticket: int) -> None:
        """Give up the ticket's turn if it was not used (the decode failed before reserving).

        Args:
            ticket: from :meth:`ticket`; settling a used ticket does nothing.
        """
        with self._cond:
            if ticket >= self._serving and ticket not in self._finished:
                self._finished.add(ticket)
                self._advance()

    def release(self, nbytes: int) -> None:
        """Give back reserved bytes.

        Args:
            nbytes: bytes reserved earlier and no longer in use.
        """
        with self._cond:
            self.free = min(self.total, self.free + nbytes)
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting decode and refuse new reservations (the consumer stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
