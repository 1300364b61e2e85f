"""The Procfile's web line refuses a bad configuration with a message that shows no secret."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson

from tests.integration.procfile_process import ROOT, VENV_BIN, procfile_line


def test_a_bad_token_table_stops_the_api_without_printing_the_tokens(tmp_path: Path) -> None:
    secret = "s3cret-token-77e1"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "PORT": "1",  # never reached: settings come first
        "CB_API_TOKENS": orjson.dumps({secret: ["read", "admin"]}).decode(),
        "CB_LOG_FORMAT": "console",
    }
    done = subprocess.run(
        ["sh", "-c", f"exec {procfile_line('web')}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "CB_API_TOKENS" in output and "unknown API scopes" in output, output
    assert secret not in output
