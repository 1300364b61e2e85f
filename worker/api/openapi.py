"""``python -m worker.api.openapi``: write the app's OpenAPI document, or check a committed copy.

The TypeScript client's types are generated from this file (clients/typescript/), so CI runs
``--check`` to fail when the committed document no longer matches the app.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings
from worker.api.app import create_app

DEFAULT_OUT = Path("clients/typescript/openapi.json")


def document() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves, built from the defaults (no I/O).

    The defaults, not the environment or a ``.env`` file: the committed copy must not depend on
    where it was exported.
    """
    settings = Settings.model_construct(log_format="console", log_level="WARNING")
    return create_app(settings).openapi()


def render(doc: dict[str, Any]) -> str:
    """Stable text: two-space indents, keys in the app's order, a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``--out`` (default clients/typescript/openapi.json); ``--check`` only compares."""
    parser = argparse.ArgumentParser(prog="python -m worker.api.openapi", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write or check")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the file differs from the app's document"
    )
    args = parser.parse_args(argv)
    text = render(document())
    out: Path = args.out
    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(
                f"{out} is out of date with the app: run python -m worker.api.openapi --out {out}",
                file=sys.stderr,
            )
            return 1
        print(f"{out} is up to date")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
