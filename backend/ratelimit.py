"""A per-client token bucket for POST /api/uploads.

Each client (the peer IP address: no proxy header is trusted) has a bucket of `burst` tokens that
refills at `per_minute` tokens per minute; an upload takes one token. `acquire` answers 0 when the
upload may go ahead, else the seconds until the next token (for Retry-After).

The clock is injectable (tests move time by hand instead of sleeping). Memory is bounded: past
`max_clients` buckets, the full ones (idle clients) are forgotten, then the oldest.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable

_EPS = 1e-9  # float slack: 10 s at 0.1 token/s is one token, not 0.9999999


def client_address(host: str | None) -> str:
    """The bucket key of a peer address: an IPv6 client counts by its /64, which one subscriber
    typically holds whole (otherwise each new address would be a fresh bucket)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RateLimiter:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate = per_minute / 60.0  # tokens per second; 0 = no limit
        self.burst = max(1, int(burst))
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last update)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, client: str) -> float:
        """Take one token for `client`: 0.0 if granted, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            if tokens >= 1.0 - _EPS:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_clients:
                    self._prune(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            c
            for c, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for c in full:
            del self._buckets[c]
        excess = len(self._buckets) - self.max_clients
        if excess > 0:  # still too many: forget the least recently seen
            for c, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[:excess]:
                del self._buckets[c]
