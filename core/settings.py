"""The one configuration object, read from ``CB_*`` environment variables (and ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SIMULATOR_URL = "http://127.0.0.1:8765"
SIMULATOR_CLIENT_ID = "demo-client"
SIMULATOR_CLIENT_SECRET = "demo-secret"  # noqa: S105 - the local simulator's published demo pair

SCOPES = frozenset({"read", "attempts", "events"})


class Settings(BaseSettings):
    """Everything configurable about course-bundles; defaults work on a developer machine."""

    model_config = SettingsConfigDict(
        env_prefix="CB_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
        hide_input_in_errors=True,  # a bad value may be a secret: errors name the field only
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = ""  # empty: the Redis URL
    key_prefix: str = "cb:"

    oneroster_base_url: str = SIMULATOR_URL
    oneroster_token_url: str = ""  # empty: {base}/oauth/token
    oneroster_client_id: str = SIMULATOR_CLIENT_ID
    oneroster_client_secret: SecretStr = SecretStr(SIMULATOR_CLIENT_SECRET)
    oneroster_scope: str = ""
    oneroster_timeout_s: float = 10.0
    oneroster_max_attempts: int = 5
    oneroster_deadline_s: float = 30.0
    oneroster_backoff_base_s: float = 0.2
    oneroster_backoff_max_s: float = 5.0
    oneroster_page_size: int = 1000
    oneroster_batch_size: int = 100
    oneroster_line_item_suffix: str = "_ali"

    # --- upstream bounds (issue 17): caps on what OneRoster may send; see docs/oneroster.md ---
    oneroster_max_response_bytes: int = 32 * 1024 * 1024  # one answer's body (decoded)
    oneroster_max_pages: int = 500  # pages of one list
    oneroster_max_records: int = 50_000  # records of one list (all pages, deleted ones too)
    oneroster_token_min_lifetime_s: float = 30.0  # a shorter expires_in counts as this
    oneroster_max_token_chars: int = 4096  # longest access_token accepted

    api_tokens: dict[str, list[str]] = Field(default_factory=dict)
    api_metrics_token: SecretStr | None = None
    api_max_body_bytes: int = 4 * 1024 * 1024

    # --- HTTP server limits (worker/server.py, docs/deploy.md) ---------------------------------
    # Real clients send a few hundred header bytes in milliseconds; these bound what one hostile
    # or broken client can hold. Header limit capped at 16 KiB (larger is answered 400).
    api_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=16 * 1024)
    api_header_timeout_s: float = Field(default=10.0, gt=0)  # until the headers end: else 408
    api_body_timeout_s: float = Field(default=60.0, gt=0)  # whole body after the headers: 408
    api_keepalive_timeout_s: float = Field(default=5.0, gt=0)  # idle keep-alive connection
    api_max_concurrency: int = Field(default=2048, ge=1)  # connections or requests: else 503

    # Older than this: served at once, marked stale and refreshed in the background. Events and
    # reconcile keep bundles current; this is the last safety net, so it is long.
    bundle_fresh_s: int = 6 * 3600
    negative_ttl_s: int = 30  # how long "course not found" is remembered
    near_cache_check_s: float = 2.0  # backstop: re-check generation at most this often
    near_cache_max_courses: int = 256

    # --- store integrity and near-cache bytes (issue 17) ---
    # The fence of a course with no live bundle (failed first build, tombstone) expires after this.
    orphan_fence_ttl_s: int = 24 * 3600
    near_cache_max_bytes: int = 256 * 1024 * 1024  # bytes the API near cache holds per process

    flight_lease_ms: int = 5000
    flight_heartbeat_ms: int = 1000
    flight_wait_s: float = 30.0

    debounce_s: float = 0.25
    debounce_max_wait_s: float = 5.0
    rebuild_lease_ms: int = 60_000
    # Failure paths (core/pipeline/failures.py): retry budgets, and how long a parked course
    # (dead-lettered for failures that retrying cannot fix) stays out of reconcile's way.
    rebuild_max_retries: int = 8
    rebuild_park_ttl_s: int = 7 * 24 * 3600
    event_max_retries: int = 6
    # The durable schedule of delayed work (core/pipeline/schedule.py, docs/celery.md).
    schedule_shards: int = 8
    schedule_tick_s: float = 0.05  # each worker's claim loop; bounds the schedule's lag
    schedule_claim_limit: int = 50  # entries claimed per shard per pass (8 shards: 400)
    schedule_claim_lease_ms: int = 15_000  # a claimer killed before enqueueing gives back then
    reconcile_period_s: float = 60.0
    reconcile_drift_batch: int = 50  # courses probed for unseen upstream changes per pass
    event_dedupe_ttl_s: int = 24 * 3600
    event_max_bytes: int = 64 * 1024
    event_max_batch: int = 1000

    # --- backpressure (issue 18): events backlog, per-token rate limits, cold builds ---------
    # Waiting messages on the broker's events queue past which intake answers 503 (a trimmed
    # task message takes about 1.6 KB of Redis, see docs/events.md); 0 turns the check off.
    event_backlog_max: int = 100_000
    events_rate_per_token: float = 500.0  # events/s per API token and process; 0: unlimited
    events_burst_per_token: int = 5000  # events a token may send at once (a batch of N costs N)
    cold_builds_per_token: int = 300  # cold builds per minute per API token and process; 0: off

    # --- upstream budget (issue 19): one fleet-wide OneRoster budget in Redis --------------------
    # core/budget/, docs/oneroster.md "Upstream budget". Rates are requests a second across the
    # whole fleet; the adaptive rate (AIMD) never climbs above oneroster_max_rps.
    oneroster_budget_enabled: bool = True  # False: every process sends as fast as it can (old)
    oneroster_max_rps: float = Field(default=50.0, gt=0)  # admitted requests a second, fleet-wide
    oneroster_burst: int = Field(default=25, ge=1)  # requests admitted at once after a quiet spell
    oneroster_max_inflight: int = Field(default=32, ge=1)  # concurrent requests, fleet-wide
    oneroster_budget_lease_s: float = Field(default=30.0, gt=0)  # a killed process's slot frees
    oneroster_budget_reserve_share: float = Field(default=0.2, ge=0, lt=1)  # kept for interactive
    oneroster_budget_floor_share: float = Field(default=0.1, ge=0, le=1)  # event/background floor
    oneroster_budget_max_wait_s: float = Field(default=5.0, gt=0)  # longest admission wait
    oneroster_budget_decrease: float = Field(default=0.75, gt=0, lt=1)  # rate x this a throttle
    oneroster_budget_increase_rps: float = Field(default=2.5, gt=0)  # climb per second of success
    oneroster_budget_min_rps: float = Field(default=1.0, gt=0)  # the rate's floor
    oneroster_budget_fallback_share: float = Field(default=0.1, gt=0, le=1)  # Redis down: own
    # --- publish safety (issue 14): validation before the swap, confirmation, kept versions ---
    # docs/bundle.md "Publish safety". Shares are of the previous bundle's lessons / resources
    # lost without a delete event explaining them; more than the share holds the build.
    publish_guard: bool = True  # validate rebuilds of built courses before the swap
    publish_max_lesson_loss: float = Field(default=0.5, ge=0, le=1)
    publish_max_resource_loss: float = Field(default=0.5, ge=0, le=1)
    publish_confirm_delay_s: float = Field(default=30.0, gt=0)  # first re-read of a held build
    publish_confirm_max_delay_s: float = Field(default=480.0, gt=0)  # backoff cap (doubling)
    publish_confirm_max_attempts: int = Field(default=5, ge=1)  # then wait for the next event
    publish_keep_generations: int = Field(default=3, ge=0)  # earlier generations kept per course
    publish_removals_ttl_s: int = 7 * 24 * 3600  # delete evidence kept for an unpublished course

    task_soft_time_limit_s: int = 120
    task_time_limit_s: int = 150
    broker_visibility_timeout_s: int = 180  # past the hard time limit: crashed workers only

    # Broker message guard and worker recycling (worker/guard.py, docs/celery.md).
    broker_message_max_bytes: int = 4 * 1024 * 1024  # a task message body (an event is <= 64 KiB)
    worker_max_memory_per_child_kb: int = 512 * 1024  # a pool process past this is replaced; 0: off

    attempt_state_ttl_s: int = 7 * 24 * 3600
    attempt_pointer_template: str = "assess:active:{userId}:{resourceId}"
    attempt_state_template: str = "assess:state:{userId}:{resourceId}:{attemptNumber}"
    attempt_index_template: str = "assess:attempts:{userId}:{resourceId}"
    attempt_hwm_template: str = "assess:hwm:{userId}:{resourceId}"

    # --- ids and sizes (docs/events.md "Resource fan-out", docs/bundle.md "Size bounds").
    # Real data needs far less: a resource sits in a handful of courses, the ~500-resource
    # course encodes to about 0.2 MB.
    resource_fanout_max: int = 500  # courses one resource event may mark dirty
    bundle_max_bytes: int = 32 * 1024 * 1024  # encoded JSON of one bundle

    worker_metrics_port: int = 9808  # the worker's Prometheus exporter; 0 turns it off
    worker_metrics_host: str = "127.0.0.1"

    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _known_scopes(cls, value: Any) -> Any:
        # Checked here, before pydantic's own checks, so that no error names a token: pydantic
        # puts a dict's keys (the tokens) in the error location.
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object of token -> list of scopes")
        for position, scopes in enumerate(value.values(), start=1):
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise ValueError(f"token {position}: the scopes must be a list of names")
            unknown = set(scopes) - SCOPES
            if unknown:
                raise ValueError(
                    f"token {position}: unknown API scopes {sorted(unknown)}; "
                    f"known: {sorted(SCOPES)}"
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _blank_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("api_tokens") in ("", None):
            data = {k: v for k, v in data.items() if k != "api_tokens"}
        return data

    @property
    def effective_broker_url(self) -> str:
        """The broker URL: ``CB_BROKER_URL`` or, when unset, the Redis URL."""
        return self.broker_url or self.redis_url

    @property
    def effective_token_url(self) -> str:
        """The OAuth token endpoint: ``CB_ONEROSTER_TOKEN_URL`` or ``{base}/oauth/token``."""
        return self.oneroster_token_url or self.oneroster_base_url.rstrip("/") + "/oauth/token"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
