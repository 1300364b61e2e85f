"""Single-flight: one execution per key in a thread pool, an event loop, or across processes."""

from __future__ import annotations

from core.singleflight.aio import AsyncSingleFlight
from core.singleflight.distributed import DistributedFlight, FlightLease, FlightOutcome
from core.singleflight.local import SingleFlight
from core.singleflight.readthrough import Cached, NegativeCache, ReadResult, ReadThrough
from core.singleflight.stats import GLOBAL_STATS, FlightStats

__all__ = [
    "GLOBAL_STATS",
    "AsyncSingleFlight",
    "Cached",
    "DistributedFlight",
    "FlightLease",
    "FlightOutcome",
    "FlightStats",
    "NegativeCache",
    "ReadResult",
    "ReadThrough",
    "SingleFlight",
]
