"""Failed logins per key (`ip:<address>`, `user:<name>`): after `max_failures` within the
window, that key must wait until the oldest failure leaves it. In memory, one per server
process, used from its one event loop: not thread-safe, and it need not be (no locking).
Bounded: keys whose failures all left the window are dropped as new failures arrive, and at
most `max_keys` keys are kept, the least recently failed dropped first."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginLimiter:
    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self.max_keys = max_keys
        # Ordered by most recent failure, oldest first: expired keys are always at the front.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, *keys: str) -> float:
        """0 when every key may try now; else the seconds until all may."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if times is not None and len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window - now)
        return wait

    def failure(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(key)
        self._prune(now)

    def success(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    @property
    def tracked_keys(self) -> int:
        """How many keys are remembered (not `__len__`: an empty limiter must not be falsy)."""
        return len(self._failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _prune(self, now: float) -> None:
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if oldest[-1] > now - self.window:
                break
            self._failures.popitem(last=False)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
