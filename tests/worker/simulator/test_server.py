"""The process entry point: command-line flags reach the served app."""

from __future__ import annotations

from typing import Any

import pytest

from worker.simulator import server


def test_flags_default_to_the_documented_values() -> None:
    args = server.parse_args([])
    assert (args.host, args.port, args.seed, args.courses) == ("127.0.0.1", 8765, 42, 20)
    assert (args.total_mode, args.max_limit, args.token_ttl_s) == ("header", 3000, 3600.0)


def test_main_builds_the_app_from_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        served["app"], served["kwargs"] = app, kwargs

    monkeypatch.setattr(server.uvicorn, "run", fake_run)
    server.main(
        [
            "--port",
            "9999",
            "--single-course-resources",
            "100",
            "--total-mode",
            "body",
            "--seed",
            "5",
        ]
    )
    state = served["app"].state.sim
    assert served["kwargs"]["port"] == 9999
    assert state.options.total_mode == "body"
    assert state.catalog.count("courses") == 1
    assert state.catalog.config.seed == 5


def test_unknown_total_mode_is_refused() -> None:
    with pytest.raises(SystemExit):
        server.parse_args(["--total-mode", "sometimes"])
