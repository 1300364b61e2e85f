"""Draw docs/img/architecture.png, the picture of the flow in docs/architecture.md.

    python docs/diagram.py

The Mermaid diagram in architecture.md says the same; keep the two in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

OUT = Path(__file__).resolve().parent / "img" / "architecture.png"

# name: (x, y, label, colour); x and y are box centres on a 12 x 8 canvas.
BOXES: dict[str, tuple[float, float, str, str]] = {
    "builder": (1.6, 7.45, "course builder", "#f2d7d5"),
    "oneroster": (10.2, 7.45, "OneRoster 1.2\n(simulator in dev)", "#f2d7d5"),
    "ingest": (1.6, 4.8, "web: POST /v1/events\nvalidate, dedupe by id", "#d6eaf8"),
    "broker": (5.9, 4.8, "broker: Redis or RabbitMQ\nqueues events, rebuilds", "#fdebd0"),
    "beat": (5.9, 6.4, "beat\nreconcile every 60 s", "#fdebd0"),
    "worker": (
        10.2,
        4.8,
        "worker\nhandle_event, rebuild:\ndebounce, fence, build, swap",
        "#fdebd0",
    ),
    "redis": (
        10.2,
        1.9,
        "Redis\nbundles, indexes, dirty marks,\nleases, flights, dead letters,\nattempt pointers",
        "#d5f5e3",
    ),
    "read": (
        5.9,
        1.9,
        "web: GET /v1/...\nnear cache, ETag, gzip/zstd,\nsingle-flight on a miss",
        "#d6eaf8",
    ),
    "webtier": (1.6, 1.9, "web tier\n(pages, assessments)", "#f2d7d5"),
    "ops": (1.6, 0.35, "Flower (task events), Prometheus (/metrics), JSON logs", "#eaeded"),
}
W, H = 3.3, 1.15

# (from, to, label, dashed, where the label sits along the arrow)
ARROWS: list[tuple[str, str, str, bool, float]] = [
    ("builder", "oneroster", "writes", False, 0.5),
    ("builder", "ingest", "CloudEvents (HTTP, Python, CLI)", False, 0.5),
    ("ingest", "broker", "handle_event", False, 0.5),
    ("beat", "broker", "reconcile", False, 0.5),
    ("broker", "worker", "tasks", False, 0.5),
    ("worker", "oneroster", "course-scoped reads", False, 0.5),
    ("worker", "redis", "fenced swap;\nPUBLISH swaps", False, 0.5),
    ("redis", "read", "HMGET; swap notices", False, 0.5),
    ("read", "oneroster", "miss: build once", True, 0.22),
    ("webtier", "read", "slices, bundles,\nredirects, attempts", False, 0.5),
]


def edge(name: str, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre toward a point leaves the box."""
    x, y = BOXES[name][0], BOXES[name][1]
    dx, dy = toward[0] - x, toward[1] - y
    scale = min(
        (W / 2) / abs(dx) if dx else float("inf"), (H / 2) / abs(dy) if dy else float("inf")
    )
    return x + dx * scale, y + dy * scale


def main() -> None:
    fig, ax = plt.subplots(figsize=(12, 8))
    ax.set_xlim(-0.3, 12.2)
    ax.set_ylim(-0.3, 8.15)
    ax.axis("off")
    for name, (x, y, label, colour) in BOXES.items():
        width = 9.5 if name == "ops" else W
        height = 0.5 if name == "ops" else H
        left = x - W / 2
        ax.add_patch(
            FancyBboxPatch(
                (left, y - height / 2),
                width,
                height,
                boxstyle="round,pad=0.05",
                facecolor=colour,
                edgecolor="#555555",
            )
        )
        ax.text(left + width / 2, y, label, ha="center", va="center", fontsize=9)
    for start, end, label, dashed, at in ARROWS:
        a = edge(start, BOXES[end][:2])
        b = edge(end, BOXES[start][:2])
        ax.annotate(
            "",
            xy=b,
            xytext=a,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#333333",
                "linestyle": "--" if dashed else "-",
                "shrinkA": 2,
                "shrinkB": 2,
            },
        )
        mid = (a[0] + (b[0] - a[0]) * at, a[1] + (b[1] - a[1]) * at)
        ax.text(
            mid[0],
            mid[1],
            label,
            ha="center",
            va="center",
            fontsize=7.5,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )
    ax.set_title("course-bundles: from the course builder to the web tier", fontsize=12)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    plt.close(fig)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
