"""Every Redis key and channel course-bundles writes, in one place.

All keys start with ``CB_KEY_PREFIX``. The keys of one course share the Redis Cluster hash tag
``{course:ID}`` so the Lua scripts that touch them stay in one slot. Cross-course indexes
(slug, subject, resource) live outside that tag and are updated after the course's own keys.
Attempt keys are not here: their templates are configured (see ``core.attempts.keys``).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "cb:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to one prefix."""

    prefix: str = DEFAULT_PREFIX

    # --- one course (hash tag {course:ID}) ------------------------------------------------
    def course_tag(self, course_id: str) -> str:
        """The hash-tagged stem shared by every key of one course."""
        return f"{self.prefix}{{course:{course_id}}}"

    def bundle(self, course_id: str) -> str:
        """Hash: the stored bundle (json, gzip, zstd bytes) and its metadata, swapped atomically."""
        return f"{self.course_tag(course_id)}:bundle"

    def fence(self, course_id: str) -> str:
        """Counter: the next fencing generation (``INCR`` before reading upstream)."""
        return f"{self.course_tag(course_id)}:fence"

    def course_indexes(self, course_id: str) -> str:
        """String: the cross-course index entries this course contributed (to undo them)."""
        return f"{self.course_tag(course_id)}:indexed"

    def course_of_indexes(self, key: str) -> str | None:
        """The course id in a ``course_indexes`` key (None if the key is not one)."""
        head, tail = self.course_tag(""), "}:indexed"
        stem = head[:-1]  # the tag without its closing brace
        if not key.startswith(stem) or not key.endswith(tail) or len(key) <= len(stem + tail):
            return None
        return key[len(stem) : -len(tail)]

    def dirty(self, course_id: str) -> str:
        """Hash: the course needs a rebuild (first-dirty and last-dirty times)."""
        return f"{self.course_tag(course_id)}:dirty"

    def rebuild_lease(self, course_id: str) -> str:
        """String: owner token of the worker rebuilding the course now."""
        return f"{self.course_tag(course_id)}:rebuild-lease"

    def rebuild_window(self, course_id: str) -> str:
        """String: a debounce window is open for the course (its expiry closes the window)."""
        return f"{self.course_tag(course_id)}:rebuild-window"

    def rebuild_failures(self, course_id: str) -> str:
        """Hash: consecutive failed rebuilds of the course and when the next retry is due."""
        return f"{self.course_tag(course_id)}:failures"

    def missing(self, course_id: str) -> str:
        """String: "this course does not exist upstream", remembered briefly."""
        return f"{self.course_tag(course_id)}:missing"

    # --- publish safety (issue 14): held builds, pins, kept generations, removal evidence -------
    def held(self, course_id: str) -> str:
        """Hash: the course's held build (reason, digest, zstd document) awaiting confirmation."""
        return f"{self.course_tag(course_id)}:held"

    def pin(self, course_id: str) -> str:
        """String: the course is pinned (JSON: when, why); rebuilds run but never swap."""
        return f"{self.course_tag(course_id)}:pin"

    def kept(self, course_id: str) -> str:
        """Hash: earlier generations of the course (``G`` -> zstd JSON, ``G:meta`` -> JSON)."""
        return f"{self.course_tag(course_id)}:kept"

    def removals(self, course_id: str) -> str:
        """Set: deletions seen in events since the last publish (``component:ID``, ``link:ID``)."""
        return f"{self.course_tag(course_id)}:removals"

    def held_index(self) -> str:
        """Sorted set: held course ids scored by when their confirmation re-read is due (ms)."""
        return f"{self.prefix}idx:held"

    def pinned_index(self) -> str:
        """Set: pinned course ids."""
        return f"{self.prefix}idx:pinned"

    # --- cross-course indexes ---------------------------------------------------------------
    def slug_index(self) -> str:
        """Hash: course slug -> course id."""
        return f"{self.prefix}idx:course-slug"

    def subject_index(self, subject: str) -> str:
        """Set: course ids of one subject."""
        return f"{self.prefix}idx:subject:{subject}"

    def subjects(self) -> str:
        """Set: every subject that has at least one built course."""
        return f"{self.prefix}idx:subjects"

    def resource_index(self, resource_id: str) -> str:
        """Set: course ids whose bundle links the resource."""
        return f"{self.prefix}idx:resource:{resource_id}"

    def courses(self) -> str:
        """Set: every course id with a stored bundle."""
        return f"{self.prefix}idx:courses"

    def dirty_set(self) -> str:
        """Sorted set: dirty course ids scored by the time they became dirty (for reconcile)."""
        return f"{self.prefix}dirty"

    def reconcile_cursor(self) -> str:
        """String: where the next reconcile pass resumes its drift probes."""
        return f"{self.prefix}reconcile:cursor"

    # --- single-flight -------------------------------------------------------------------
    def flight(self, name: str) -> str:
        """Stem of one cross-process flight's keys (lease, epoch, outcome) and its channel."""
        return f"{self.prefix}flight:{name}"

    def bundle_flight_name(self, course_id: str) -> str:
        """Flight name for building one course's bundle (keeps the course's hash tag)."""
        return f"{{course:{course_id}}}:build"

    # --- events -----------------------------------------------------------------------------
    def event_seen(self, event_id: str) -> str:
        """String: the event id was already accepted (24 h idempotency window)."""
        return f"{self.prefix}event:{event_id}"

    def event_done(self, event_id: str) -> str:
        """String: the worker already acted on the event (guards against broker redelivery)."""
        return f"{self.prefix}event-done:{event_id}"

    def dlq(self) -> str:
        """Hash: dead-letter id -> entry JSON."""
        return f"{self.prefix}dlq"

    def dlq_order(self) -> str:
        """Sorted set: dead-letter ids by arrival time."""
        return f"{self.prefix}dlq:order"

    # --- the durable schedule (hash tag {sched:N} per shard) --------------------------------
    def schedule_due(self, shard: int) -> str:
        """Sorted set: entry id -> due time (ms) of delayed work not yet claimed."""
        return f"{self.prefix}{{sched:{shard}}}:due"

    def schedule_claims(self, shard: int) -> str:
        """Sorted set: entry id -> claim lease expiry (ms) of entries being enqueued."""
        return f"{self.prefix}{{sched:{shard}}}:claims"

    def schedule_payload(self, shard: int) -> str:
        """Hash: entry id -> JSON of the task to enqueue (name, args, kwargs, queue)."""
        return f"{self.prefix}{{sched:{shard}}}:payload"

    # --- the upstream budget (one key per OneRoster base URL) ---------------------------------
    def budget(self, base_url: str) -> str:
        """Hash: the fleet's budget for one upstream (rate, tokens, pause, leases, waiters)."""
        return f"{self.prefix}budget:{{{base_url.rstrip('/')}}}"

    # --- pub/sub ------------------------------------------------------------------------------
    def swaps_channel(self) -> str:
        """Channel: ``{courseId, generation}`` published on every bundle swap or delete."""
        return f"{self.prefix}swaps"
