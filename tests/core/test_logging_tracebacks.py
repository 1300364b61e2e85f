"""A logged traceback never shows local variables (rich's console default would)."""

from __future__ import annotations

import io
import sys
import uuid

import pytest

from core.logging import configure_logging, get_logger


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_traceback_shows_no_local_variables(
    monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    configure_logging(fmt, "INFO", force=True)
    log = get_logger("tests")

    def handle(headers: dict[str, str]) -> None:
        authorization = headers["authorization"]
        raise RuntimeError(f"failed for a {len(authorization)}-byte credential")

    secret = f"local-secret-{uuid.uuid4().hex}"  # made at run time: not in any source line
    try:
        handle({"authorization": f"Bearer {secret}"})
    except RuntimeError:
        log.exception("unhandled error")
    text = out.getvalue()
    assert "RuntimeError" in text and "handle" in text  # the traceback is there
    assert secret not in text
