"""Per-credential token buckets with bounded memory.

Only credentials that authenticated get a bucket: a request with an unknown or
bogus token is answered 401 without allocating anything here, so a flood of
random tokens cannot grow this table. Known credentials are bounded by what the
admin issued; as a second fence the table holds at most ``max_keys`` buckets
and evicts the least recently used (which only forgets that key's recent count).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable, Hashable, Optional


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        max_keys: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: "OrderedDict[Hashable, list[float]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(self, key: Hashable) -> Optional[int]:
        """Count one request for ``key``: None if allowed, else seconds to wait."""
        if self.capacity <= 0:
            return None  # RATE_LIMIT_PER_MINUTE=0: limiter off
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.capacity, now]
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket[0]) / self.rate))
