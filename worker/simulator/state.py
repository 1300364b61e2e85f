"""The simulator's mutable state: options, request stats, issued tokens, cached listings."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.simulator.catalog import COLLECTIONS, Catalog
from worker.simulator.faults import FaultInjector
from worker.simulator.filters import build_index, indexable, parse_filter, sort_records

Rec = dict[str, Any]
TotalMode = Literal["header", "link", "body", "none"]
TOTAL_MODES: tuple[str, ...] = ("header", "link", "body", "none")
DEMO_CLIENTS: dict[str, str] = {"demo-client": "demo-secret"}
KINDS: tuple[str, ...] = ("token", *COLLECTIONS, "writes", "faults", "unauthorized")
_LIST_CACHE_SIZE = 128
_INDEX_CACHE_SIZE = 16
TIMELINE_SLOTS = 36_000  # tenths of a second of request timeline kept (an hour)


@dataclass(slots=True)
class SimulatorOptions:
    """Server behaviour; mutable at run time through ``POST /_sim/options`` (clock excepted)."""

    token_ttl_s: float = 3600.0
    default_limit: int = 100
    max_limit: int = 3000
    total_mode: TotalMode = "header"
    require_auth: bool = True
    clients: dict[str, str] = field(default_factory=lambda: dict(DEMO_CLIENTS))
    clock: Callable[[], float] = time.time  # token expiry and fault timers


class Stats:
    """Requests received per kind and per path, and faults injected; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kinds: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        self.fault_reasons: Counter[str] = Counter()
        # Requests and 429 answers per tenth of a second of wall time (bench/coldstart.py and
        # the budget tests read any one-second window from these); the oldest are dropped.
        self.timeline: dict[int, list[int]] = {}

    def request(self, kind: str, path: str) -> None:
        with self._lock:
            self.kinds[kind] += 1
            self.paths[path] += 1
            self._tick(0)

    def _tick(self, column: int) -> None:
        slot = int(time.time() * 10)
        counts = self.timeline.get(slot)
        if counts is None:
            counts = self.timeline[slot] = [0, 0]
            if len(self.timeline) > TIMELINE_SLOTS:
                del self.timeline[min(self.timeline)]
        counts[column] += 1

    def count(self, kind: str) -> None:
        with self._lock:
            self.kinds[kind] += 1

    def fault(self, reason: str, status: int | None = None) -> None:
        with self._lock:
            self.kinds["faults"] += 1
            self.fault_reasons[reason] += 1
            if status == 429:
                self._tick(1)

    def reset(self) -> None:
        with self._lock:
            self.kinds.clear()
            self.paths.clear()
            self.fault_reasons.clear()
            self.timeline.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counted = sum(self.paths.values())
            return {
                "requests": counted,
                "kinds": {kind: self.kinds.get(kind, 0) for kind in KINDS},
                "faultReasons": dict(self.fault_reasons),
                "paths": dict(sorted(self.paths.items())),
                "timeline": [[slot, *counts] for slot, counts in sorted(self.timeline.items())],
            }


class Tokens:
    """Issued access tokens and their expiry times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def issue(self, *, now: float, ttl_s: float) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
            self._expiry[token] = now + ttl_s
        return token

    def valid(self, token: str, *, now: float) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and now < expiry

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._expiry)
            self._expiry = {}
            return count


@dataclass(slots=True)
class SimulatorState:
    """Everything the app serves from; ``app.state.sim`` holds it."""

    catalog: Catalog
    options: SimulatorOptions
    faults: FaultInjector = field(default_factory=FaultInjector)
    stats: Stats = field(default_factory=Stats)
    tokens: Tokens = field(default_factory=Tokens)
    generation: int = 0  # bumped when the catalog is replaced
    _cache: OrderedDict[tuple[Any, ...], list[Rec]] = field(default_factory=OrderedDict)
    _indexes: OrderedDict[tuple[Any, ...], dict[str, list[int]]] = field(
        default_factory=OrderedDict
    )

    def replace_catalog(self, catalog: Catalog) -> None:
        """Serve another catalog from now on (cached listings are dropped)."""
        self.catalog = catalog
        self.generation += 1
        self._cache.clear()
        self._indexes.clear()

    def listing(
        self, collection: str, filter_text: str | None, sort: str | None, descending: bool
    ) -> list[Rec]:
        """Filtered, sorted records; cached per collection version so paging costs a slice."""
        version, records = self.catalog.snapshot(collection)
        key = (self.generation, collection, version, filter_text, sort, descending)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        if filter_text:
            parsed = parse_filter(filter_text)
            test = parsed.predicate()
            narrowed = indexable(parsed)
            if narrowed is not None:
                index = self._index(collection, version, records, narrowed[0])
                hits = sorted({p for v in narrowed[1] for p in index.get(v, ())})
                records = [r for r in (records[p] for p in hits) if test(r)]
            else:
                records = [r for r in records if test(r)]
        if sort:
            records = sort_records(records, sort, descending=descending)
        elif descending:
            records = records[::-1]
        self._cache[key] = records
        if len(self._cache) > _LIST_CACHE_SIZE:
            self._cache.popitem(last=False)
        return records

    def _index(
        self, collection: str, version: int, records: list[Rec], path: str
    ) -> dict[str, list[int]]:
        key = (self.generation, collection, version, path)
        index = self._indexes.get(key)
        if index is None:
            index = build_index(records, path)
            self._indexes[key] = index
            if len(self._indexes) > _INDEX_CACHE_SIZE:
                self._indexes.popitem(last=False)
        return index


_OPTION_FIELDS = ("token_ttl_s", "default_limit", "max_limit", "total_mode", "require_auth")


def options_dict(options: SimulatorOptions) -> Rec:
    """The JSON-visible options (no clients, no clock)."""
    return {name: getattr(options, name) for name in _OPTION_FIELDS}


def update_options(options: SimulatorOptions, changes: Rec) -> None:
    """Validate and apply option changes in place; raises ValueError on a bad one."""
    unknown = set(changes) - set(_OPTION_FIELDS)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {list(_OPTION_FIELDS)}")
    if "total_mode" in changes and changes["total_mode"] not in TOTAL_MODES:
        raise ValueError(f"total_mode must be one of {TOTAL_MODES}")
    for name in ("default_limit", "max_limit"):
        value = changes.get(name, getattr(options, name))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer")
    ttl = changes.get("token_ttl_s", options.token_ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise ValueError("token_ttl_s must be a number")
    if not isinstance(changes.get("require_auth", True), bool):
        raise ValueError("require_auth must be a boolean")
    for name, value in changes.items():
        setattr(options, name, value)
