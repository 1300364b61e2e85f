"""Asyncio single-flight: cancellation and timeouts of callers never cancel the shared flight."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import FlightTimeout
from core.singleflight.aio import AsyncSingleFlight
from core.singleflight.stats import FlightStats


@pytest.mark.parametrize("enabled", [True, False])
def test_cancelled_first_caller_leaves_the_flight_running_for_a_later_joiner(
    enabled: bool,
) -> None:
    runs = 0

    async def scenario() -> str:
        nonlocal runs
        sf: AsyncSingleFlight[str] = AsyncSingleFlight(enabled=enabled, stats=FlightStats())
        started, release = asyncio.Event(), asyncio.Event()

        async def build() -> str:
            nonlocal runs
            runs += 1
            started.set()
            await release.wait()
            return "bundle"

        first = asyncio.create_task(sf.do("k", build))
        await started.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        started.clear()
        joiner = asyncio.create_task(sf.do("k", build))
        await asyncio.sleep(0)
        release.set()
        return await joiner

    assert asyncio.run(scenario()) == "bundle"
    assert runs == (1 if enabled else 2)


@pytest.mark.parametrize("enabled", [True, False])
def test_concurrent_awaits_share_one_run_and_one_error(enabled: bool) -> None:
    runs = 0

    async def scenario() -> list[BaseException | str]:
        sf: AsyncSingleFlight[str] = AsyncSingleFlight(enabled=enabled, stats=FlightStats())

        async def build() -> str:
            nonlocal runs
            runs += 1
            await asyncio.sleep(0.01)
            raise LookupError("course gone")

        return await asyncio.gather(*(sf.do("k", build) for _ in range(10)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, LookupError) for r in results)
    assert runs == (1 if enabled else 10)
    assert len({id(r) for r in results}) == (1 if enabled else 10)


@pytest.mark.parametrize("enabled", [True, False])
def test_joiner_timeout_raises_flight_timeout_but_the_flight_finishes(enabled: bool) -> None:
    runs = 0
    stats = FlightStats()

    async def scenario() -> tuple[str, BaseException | str]:
        nonlocal runs
        sf: AsyncSingleFlight[str] = AsyncSingleFlight(enabled=enabled, stats=stats)
        release = asyncio.Event()

        async def build() -> str:
            nonlocal runs
            runs += 1
            await release.wait()
            return "bundle"

        leader = asyncio.create_task(sf.do("k", build))
        await asyncio.sleep(0)
        impatient = asyncio.create_task(sf.do("k", build, timeout=0.02))
        done, _ = await asyncio.wait({impatient}, timeout=0.2)
        release.set()
        outcome: BaseException | str = (
            impatient.exception() or impatient.result() if done else await impatient
        )
        return await leader, outcome

    value, impatient_outcome = asyncio.run(scenario())
    assert value == "bundle"
    if enabled:
        assert isinstance(impatient_outcome, FlightTimeout)
        assert runs == 1
    else:
        assert impatient_outcome == "bundle"  # no flight to time out of: it built its own
        assert runs == 2
    assert stats.timeouts == (1 if enabled else 0)


def test_a_flight_stranded_by_a_closed_event_loop_is_not_joined_from_another() -> None:
    sf: AsyncSingleFlight[str] = AsyncSingleFlight(stats=FlightStats())

    async def never() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    stranded: list[asyncio.Task[str]] = []

    async def strand() -> None:
        stranded.append(asyncio.ensure_future(sf.do("k", never)))
        await asyncio.sleep(0)

    first = asyncio.new_event_loop()
    first.run_until_complete(strand())
    first.close()  # the flight's task never finishes: its loop is gone
    assert sf.in_flight("k")

    async def fresh() -> str:
        return "built here"

    assert asyncio.run(sf.do("k", fresh, timeout=2.0)) == "built here"
