"""The numbers of the upstream budget, from ``Settings`` (docs/oneroster.md "Upstream budget")."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Rates in requests a second, times in milliseconds (the Lua scripts get the same values)."""

    max_rps: float = 50.0
    burst: float = 25.0
    max_inflight: int = 32
    lease_ms: int = 30_000
    reserve_share: float = 0.2
    floor_share: float = 0.1
    decrease: float = 0.75
    increase_rps: float = 2.5
    min_rps: float = 1.0
    waiter_ms: int = 1000  # a waiter not seen again for this long no longer counts as waiting
    poll_ms: int = 250  # longest wait hint: waiters look again at least this often

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetPolicy:
        s = settings
        return cls(
            max_rps=s.oneroster_max_rps,
            burst=float(s.oneroster_burst),
            max_inflight=s.oneroster_max_inflight,
            lease_ms=round(s.oneroster_budget_lease_s * 1000),
            reserve_share=s.oneroster_budget_reserve_share,
            floor_share=s.oneroster_budget_floor_share,
            decrease=s.oneroster_budget_decrease,
            increase_rps=s.oneroster_budget_increase_rps,
            min_rps=min(s.oneroster_budget_min_rps, s.oneroster_max_rps),
        )

    def share(self, fraction: float) -> BudgetPolicy:
        """This budget scaled to ``fraction`` of itself (a process's own share, Redis down)."""
        return replace(
            self,
            max_rps=self.max_rps * fraction,
            burst=max(1.0, self.burst * fraction),
            max_inflight=max(1, math.floor(self.max_inflight * fraction)),
            increase_rps=self.increase_rps * fraction,
            min_rps=min(self.min_rps, self.max_rps * fraction),
        )

    @property
    def reserve_tokens(self) -> float:
        """Tokens only interactive requests may take."""
        return self.burst * self.reserve_share

    @property
    def reserve_slots(self) -> int:
        """In-flight slots only interactive requests may take."""
        return math.floor(self.max_inflight * self.reserve_share)

    @property
    def floor_burst(self) -> float:
        """Floor credits a non-interactive class may bank."""
        return max(1.0, self.burst * self.floor_share)
