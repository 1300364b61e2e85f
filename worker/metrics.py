"""Prometheus metrics of the worker and the API (docs/observability.md lists them all)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "cb_events_total", "Events seen by the worker, by outcome", ["outcome"]
)  # received, duplicate, invalid, applied, failed
REBUILDS = Counter(
    "cb_rebuilds_total", "Rebuilds by outcome", ["outcome"]
)  # started, coalesced, succeeded, failed, stale_rejected, not_found, retried
STALE_WRITES = Counter("cb_stale_writes_rejected_total", "Bundle writes rejected by fencing")
EVENT_TO_FRESH = Histogram(
    "cb_event_to_fresh_seconds",
    "From a course becoming dirty to its new bundle being readable",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60),
)
REBUILD_DURATION = Histogram(
    "cb_rebuild_duration_seconds",
    "Wall time of one rebuild (upstream reads included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FAILURES = Counter(
    "cb_task_failures_total",
    "Failed rebuilds and events by failure kind and the verdict they got",
    ["task", "kind", "verdict"],
)  # kind: retryable, permanent, unexpected; verdict: retry, dead_letter_and_retry, ...
DEAD_LETTERS = Counter(
    "cb_dead_letters_total", "Entries written to the dead-letter store", ["source"]
)  # http, publisher, worker, task, broker
BROKER_REJECTED = Counter(
    "cb_broker_messages_rejected_total",
    "Broker messages the worker's guard refused (dead-lettered and acknowledged), by reason",
    ["reason"],
)  # core.events.message_guard.RejectCode
RECONCILE_REQUEUED = Counter(
    "cb_reconcile_requeued_total", "Courses requeued by reconcile", ["why"]
)
DLQ_SIZE = Gauge(
    "cb_dead_letters_stored", "Entries in the dead-letter store (sampled by reconcile)"
)

# --- upstream budget (issue 19): core/budget/, docs/oneroster.md "Upstream budget" ---------------
BUDGET_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BUDGET_ADMITTED = Counter(
    "cb_budget_admitted_total", "OneRoster requests admitted by the upstream budget", ["class"]
)
BUDGET_WAITED = Counter(
    "cb_budget_waited_total", "Admitted OneRoster requests that had to wait first", ["class"]
)
BUDGET_THROTTLED = Counter(
    "cb_budget_throttled_total", "Throttling answers (429, 503 Retry-After)", ["class"]
)
BUDGET_GAVE_UP = Counter("cb_budget_gave_up_total", "Requests refused admission in time", ["class"])
BUDGET_RATE = Gauge("cb_budget_rate", "Admitted fleet rate (req/s)", multiprocess_mode="max")
BUDGET_WAIT = Histogram(
    "cb_budget_wait_seconds", "Time a request waited for admission", buckets=BUDGET_WAIT_BUCKETS
)


class BudgetMetrics:
    """The gate's observer in the worker (and in ``bundles warm``)."""

    def admitted(self, cls: str, waited_s: float, rate: float) -> None:
        BUDGET_ADMITTED.labels(cls).inc()
        if waited_s > 0:
            BUDGET_WAITED.labels(cls).inc()
        BUDGET_WAIT.observe(waited_s)
        BUDGET_RATE.set(rate)

    def throttled(self, cls: str) -> None:
        BUDGET_THROTTLED.labels(cls).inc()

    def gave_up(self, cls: str) -> None:
        BUDGET_GAVE_UP.labels(cls).inc()


# --- publish safety (issue 14): held builds, confirmations, held and pinned courses -----------
PUBLISH_HELD = Counter(
    "cb_publish_held_total",
    "Rebuilds not published: held for a confirmation re-read, or built while pinned, by reason",
    ["reason"],
)  # core.bundle.validation reasons, not_found, pinned
PUBLISH_SETTLED = Counter(
    "cb_publish_settled_total",
    "Held builds settled, by outcome",
    ["outcome"],
)  # confirmed, recovered, differs, gave_up
COURSES_GUARDED = Gauge(
    "cb_courses_guarded",
    "Courses with a held build or a pin now (sampled after each hold change and by reconcile)",
    ["state"],
    multiprocess_mode="max",
)  # held, pinned
