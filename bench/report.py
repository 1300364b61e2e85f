"""Turn the benchmark outputs (bench/out/*.json) into docs/benchmarks.md and PNG plots.

Each known benchmark (build, burst, freshness, stampede, egress, api) gets a summary line, tables
and a figure in docs/img/bench-NAME.png; any other JSON file in bench/out gets a generic table of
its numbers and a bar chart of them. Every section names the machine and date of its run.

    python bench/report.py            # or: python -m bench.report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
DOC = ROOT / "docs" / "benchmarks.md"
IMG_DIR = ROOT / "docs" / "img"
ORDER = ("build", "burst", "freshness", "stampede", "egress", "api", "coldstart")


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Bars:
    """One bar chart: a value per label for each series, optionally log-scaled, with a target."""

    title: str
    labels: list[str]
    series: dict[str, list[float]]
    ylabel: str
    log: bool = False
    target: float | None = None
    target_label: str = "target"


@dataclass(frozen=True)
class Lines:
    """One line chart: a y series per name over x (seconds), optionally a horizontal limit."""

    title: str
    series: dict[str, list[float]]
    ylabel: str
    target: float | None = None
    target_label: str = "limit"


@dataclass
class Section:
    name: str
    title: str
    command: str
    machine: str
    date: str
    headline: str = ""
    met: str = "-"
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Bars | Lines] = field(default_factory=list)


# --- formatting ---------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A number as a reader wants it: thousands separators, few decimals; bools as yes/no."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        size = abs(value)
        if size >= 100:
            return f"{value:,.0f}"
        if size >= 10:
            return f"{value:.1f}"
        if size >= 0.01:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def met_text(met: dict[str, Any] | None) -> str:
    if not met:
        return "-"
    return ", ".join(f"{name}: {'met' if ok else 'missed'}" for name, ok in met.items())


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists of scalars kept as lists, lists of dicts dropped."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            out[prefix[:-1]] = value
    else:
        out[prefix[:-1]] = value
    return out


# --- one section per benchmark ------------------------------------------------------------------
def _publish_safety_rows(d: dict[str, Any], targets: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Validation cost and kept-generation bytes (bench/build.py, issue 14), when measured."""
    if "validationCpuMsMedian" not in d:
        return []
    kept = d.get("keptGenerations", {})
    return [
        (
            "validation before the swap, CPU ms (share of build CPU)",
            f"{fmt(d['validationCpuMsMedian'])} ({d['validationShareOfBuildCpu']:.1%})",
            f"< {targets.get('validationShareOfBuildCpu', 0):.0%}",
        ),
        (
            f"{fmt(kept.get('kept'))} kept generations, Redis bytes (each)",
            f"{fmt(kept.get('keptBytes'))} ({fmt(kept.get('keptBytesPerGeneration'))})",
            "-",
        ),
    ]


def section_build(s: Section, d: dict[str, Any]) -> None:
    course, targets = d["course"], d.get("targets", {})
    s.headline = (
        f"{fmt(d['upstreamRequestsPerRebuild'])} OneRoster requests per rebuild "
        f"(old org-wide path {fmt(d['orgWideRequestsOldPath'])}); build CPU "
        f"{fmt(d['buildCpuMsMedian'])} ms; zstd {d['zstdShare']:.0%} of raw"
    )
    met = {
        "buildCpuMs": d["buildCpuMsMedian"] <= targets.get("buildCpuMs", math.inf),
        "compressedShare": d["zstdShare"] <= targets.get("compressedShare", math.inf),
    }
    if "validationShareOfBuildCpu" in d:  # publish safety (issue 14)
        met["validationShare"] = d["validationShareOfBuildCpu"] <= targets.get(
            "validationShareOfBuildCpu", math.inf
        )
    s.met = met_text(met)
    s.notes.append(
        f"Course: {fmt(course['units'])} units, {fmt(course['lessons'])} lessons, "
        f"{fmt(course['resources'])} resources, {fmt(course['skipped'])} skipped."
    )
    s.tables.append(
        Table(
            ("measure", "value", "target"),
            [
                ("upstream requests per rebuild", fmt(d["upstreamRequestsPerRebuild"]), "-"),
                ("org-wide requests, old path", fmt(d["orgWideRequestsOldPath"]), "-"),
                ("old / new requests", fmt(d["requestRatioOldOverNew"]), "-"),
                ("OneRoster fetch, ms (median)", fmt(d["fetchMsMedian"]), "-"),
                (
                    "build CPU, ms (median)",
                    fmt(d["buildCpuMsMedian"]),
                    fmt(targets.get("buildCpuMs")),
                ),
                ("build + encode CPU, ms (median)", fmt(d["buildPlusEncodeCpuMsMedian"]), "-"),
                ("raw JSON, bytes", fmt(d["rawBytes"]), "-"),
                ("gzip, bytes (share)", f"{fmt(d['gzipBytes'])} ({d['gzipShare']:.1%})", "-"),
                (
                    "zstd, bytes (share)",
                    f"{fmt(d['zstdBytes'])} ({d['zstdShare']:.1%})",
                    f"≤ {targets.get('compressedShare', 0):.0%}",
                ),
                *_publish_safety_rows(d, targets),
            ],
        )
    )
    s.charts += [
        Bars(
            "Bundle size",
            ["raw", "gzip", "zstd"],
            {"KiB": [d["rawBytes"] / 1024, d["gzipBytes"] / 1024, d["zstdBytes"] / 1024]},
            "KiB",
        ),
        Bars(
            "OneRoster requests",
            ["per rebuild (new)", "org-wide (old)"],
            {"requests": [d["upstreamRequestsPerRebuild"], d["orgWideRequestsOldPath"]]},
            "requests",
        ),
        Bars(
            "Build CPU (median)",
            ["build", "build + encode"],
            {"ms": [d["buildCpuMsMedian"], d["buildPlusEncodeCpuMsMedian"]]},
            "ms",
            target=targets.get("buildCpuMs"),
            target_label="build target",
        ),
    ]


def section_burst(s: Section, d: dict[str, Any]) -> None:
    s.headline = (
        f"{fmt(d['events'])} events in {fmt(d['burstSeconds'])} s → {fmt(d['rebuilds'])} "
        f"rebuilds ({fmt(d['reduction'])}x fewer than one per event)"
    )
    s.met = met_text(
        {
            "rebuilds": d["rebuilds"] <= d.get("target", math.inf),
            "final": d["finalEqualsFreshBuild"],
        }
    )
    s.tables.append(
        Table(
            ("measure", "value"),
            [
                ("events", fmt(d["events"])),
                ("burst length, s", fmt(d["burstSeconds"])),
                ("debounce window, s", fmt(d["debounceS"])),
                ("rebuilds", fmt(d["rebuilds"])),
                ("rebuilds without debounce", fmt(d["baselineRebuildsWithoutDebounce"])),
                ("reduction", f"{fmt(d['reduction'])}x"),
                ("target (at most rebuilds)", fmt(d.get("target"))),
                ("final bundle equals a fresh build", fmt(d["finalEqualsFreshBuild"])),
            ],
        )
    )
    s.charts.append(
        Bars(
            "Rebuilds for one burst",
            ["debounced", "one per event"],
            {"rebuilds": [d["rebuilds"], d["baselineRebuildsWithoutDebounce"]]},
            "rebuilds (log)",
            log=True,
            target=d.get("target"),
        )
    )


def section_freshness(s: Section, d: dict[str, Any]) -> None:
    target = d.get("targetP99Ms")
    spaced, rapid = d["spaced"], d.get("rapid", {})
    s.headline = (
        f"event → fresh bundle p50 {fmt(spaced['p50Ms'])} ms, p99 {fmt(spaced['p99Ms'])} ms "
        f"(target p99 ≤ {fmt(target)} ms)"
    )
    s.met = met_text({"p99": spaced["p99Ms"] <= (target or math.inf)})
    cols = ("p50Ms", "p90Ms", "p99Ms", "maxMs")
    rows = [
        (name, fmt(run.get("events")), *(fmt(run.get(c)) for c in cols))
        for name, run in (("spaced", spaced), ("rapid", rapid))
        if run
    ]
    s.tables.append(Table(("events", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"), rows))
    s.notes.append(
        f"Debounce window {fmt(d.get('debounceS'))} s. *spaced*: events further apart than the "
        "window (each is a leading edge); *rapid*: events inside a window (trailing edge)."
    )
    labels = ["p50", "p90", "p99", "max"]
    s.charts.append(
        Bars(
            "Event to fresh bundle",
            labels,
            {
                name: [math.nan if run.get(c) is None else float(run[c]) for c in cols]
                for name, run in (("spaced", spaced), ("rapid", rapid))
                if run
            },
            "ms",
            target=target,
            target_label="p99 target",
        )
    )


def section_stampede(s: Section, d: dict[str, Any]) -> None:
    cfg, summary = d.get("config", {}), d["summary"]
    callers = cfg.get("procs", 1) * cfg.get("callers", 1)
    api = summary.get("api") or {}
    threads = summary.get("readthrough") or summary.get("flight") or {}
    none = summary.get("none", {})
    floor = summary.get("floor", {})
    s.headline = (
        f"{fmt(callers)} cold readers in {fmt(cfg.get('procs'))} processes: "
        f"{fmt(api.get('builds_median'))} build with single-flight, "
        f"{fmt(none.get('builds_median'))} without; wake-up p99 "
        f"{fmt(api.get('wake_p99_ms_median'))} ms as the API serves them (target 5 ms)"
    )
    s.met = met_text(
        {
            "oneBuild": api.get("builds_median") == 1,
            "wakeP99": (api.get("wake_p99_ms_median") or math.inf) <= 5.0,
        }
    )
    s.notes.append(
        "The target is checked on `api` (requests on an event loop, one worker thread per "
        "course per process). With one thread per reader instead (`readthrough`: "
        f"{fmt(threads.get('wake_p99_ms_median'))} ms) waking the threads costs more than the "
        f"target on 2 cores: even the `floor` for threads is {fmt(floor.get('wake_p99_ms_median'))}"
        " ms."
    )
    s.notes.append(
        f"{fmt(cfg.get('procs'))} processes x {fmt(cfg.get('callers'))} callers, build "
        f"{fmt(cfg.get('build_ms'))} ms, {fmt(cfg.get('reps'))} reps (medians). Wake-up: a "
        "waiter's return minus the moment the first build finished."
    )
    rows = [
        (
            name,
            fmt(v.get("builds_median")),
            fmt(v.get("builds_per_rep")),
            fmt(v.get("wake_p50_ms_median")),
            fmt(v.get("wake_p99_ms_median")),
            fmt(v.get("wall_ms_median")),
            fmt(v.get("errors_total")),
        )
        for name, v in summary.items()
    ]
    s.tables.append(
        Table(
            (
                "variant",
                "builds",
                "builds per rep",
                "wake p50 ms",
                "wake p99 ms",
                "wall ms",
                "errors",
            ),
            rows,
        )
    )
    names = list(summary)
    s.charts += [
        Bars(
            "Upstream builds (median)",
            names,
            {"builds": [float(summary[n].get("builds_median") or 0) for n in names]},
            "builds (log)",
            log=True,
        ),
        Bars(
            "Waiters' wake-up delay",
            names,
            {
                "p50": [float(summary[n].get("wake_p50_ms_median") or 0) for n in names],
                "p99": [float(summary[n].get("wake_p99_ms_median") or 0) for n in names],
            },
            "ms (log)",
            log=True,
        ),
    ]


def section_egress(s: Section, d: dict[str, Any]) -> None:
    cat, targets = d["catalog"], d.get("targets", {})
    old, new = d["oldBytesPerLessonRead"], d["newBytesPerLessonReadSteadyState"]
    s.headline = (
        f"Redis bytes per lesson read: {old / 1e6:,.1f} MB (old org-wide path) → {fmt(new)} B "
        f"(bundles + near cache), {fmt(d.get('ratioOldOverNew'))}x fewer"
    )
    s.met = met_text(d.get("met"))
    s.notes.append(
        f"Catalog: {fmt(cat['courses'])} courses, {fmt(cat['lessons'])} lessons, "
        f"{fmt(cat['placements'])} placements. New path measured over "
        f"{fmt(d['newSecondsPerRep'])} s per rep ({fmt(d['newReadsPerRep'])} reads), "
        f"backstop check every {fmt(d['nearCacheCheckS'])} s."
    )
    s.tables.append(
        Table(
            ("measure", "value", "target"),
            [
                ("old path, bytes per lesson read", fmt(old), "-"),
                (
                    "new path, bytes per lesson read (steady state)",
                    fmt(new),
                    f"≤ {fmt(targets.get('bytesPerRead'))}",
                ),
                (
                    "old / new",
                    f"{fmt(d.get('ratioOldOverNew'))}x",
                    f"≥ {fmt(targets.get('ratio'))}x",
                ),
                ("warm-up, one read per course, bytes", fmt(d["warmupBytesOneReadPerCourse"]), "-"),
            ],
        )
    )
    s.charts.append(
        Bars(
            "Redis bytes per lesson read",
            ["old org-wide path", "bundles + near cache"],
            {"bytes": [float(old), float(new)]},
            "bytes (log)",
            log=True,
            target=targets.get("bytesPerRead"),
            target_label="target (new path)",
        )
    )


def section_api(s: Section, d: dict[str, Any]) -> None:
    api, bare, targets = d["api"], d["bare"], d.get("targets", {})
    s.headline = (
        f"lesson reads: {fmt(api['rps'])} req/s vs {fmt(bare['rps'])} for a bare endpoint "
        f"({fmt(d['throughputRatio'])}x), p99 {fmt(api['p99_ms'])} vs {fmt(bare['p99_ms'])} ms "
        f"({fmt(d['p99Ratio'])}x)"
    )
    s.met = met_text(d.get("met"))
    s.notes.append(
        f"Load generator {d.get('loadGenerator', '?')}, {fmt(d.get('connections'))} connections, "
        f"{fmt(d.get('seconds'))} s per run, {fmt(d.get('reps'))} reps (medians); lesson body "
        f"{fmt(d.get('lessonBytes'))} bytes."
    )
    s.tables.append(
        Table(
            ("endpoint", "req/s", "p50 ms", "p99 ms"),
            [
                (name, fmt(run["rps"]), fmt(run["p50_ms"]), fmt(run["p99_ms"]))
                for name, run in (("api", api), ("bare", bare))
            ],
        )
    )
    s.tables.append(
        Table(
            ("ratio", "value", "target"),
            [
                (
                    "api / bare throughput",
                    fmt(d["throughputRatio"]),
                    f"≥ {fmt(targets.get('throughputRatio'))}",
                ),
                ("api / bare p99", fmt(d["p99Ratio"]), f"≤ {fmt(targets.get('p99Ratio'))}"),
            ],
        )
    )
    s.charts += [
        Bars("Throughput", ["api", "bare"], {"req/s": [api["rps"], bare["rps"]]}, "req/s"),
        Bars(
            "Latency",
            ["p50", "p99"],
            {"api": [api["p50_ms"], api["p99_ms"]], "bare": [bare["p50_ms"], bare["p99_ms"]]},
            "ms",
        ),
    ]


def section_generic(s: Section, d: dict[str, Any]) -> None:
    """Any other benchmark: every scalar as a row, every number in one chart."""
    flat = {k: v for k, v in flatten(d).items() if k not in ("machine", "date")}
    s.headline = f"{len(flat)} recorded values (below)"
    s.met = met_text(d.get("met") if isinstance(d.get("met"), dict) else None)
    s.tables.append(Table(("measure", "value"), [(k, fmt(v)) for k, v in flat.items()]))
    numbers = {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0
    }
    if numbers:
        spread = max(numbers.values()) / min(numbers.values())
        s.charts.append(
            Bars(s.name, list(numbers), {"value": list(numbers.values())}, "", log=spread > 100)
        )


def section_coldstart(s: Section, d: dict[str, Any]) -> None:
    """Cold start against a rate limit, budget on and off (bench/coldstart.py)."""
    targets = d["targets"]
    keys = ("limit_ratio", "throttled_share", "hot_first_read_p99_ms", "dead_letters")
    met = {k: d[k] <= targets[k] for k in keys}
    s.met = met_text(met)
    cfg = d["config"]
    s.headline = (
        f"{cfg['courses']:,} courses at {cfg['rate']} req/s: built in {fmt(d['limit_ratio'])} x "
        f"the limit's time with the budget ({fmt(d['limit_ratio_off'])} x without), "
        f"429s {d['throttled_share']:.1%} ({d['throttled_share_off']:.1%}), hot first read p99 "
        f"{fmt(d['hot_first_read_p99_ms'])} ms ({fmt(d['hot_first_read_p99_ms_off'])} ms)"
    )
    rows = [
        (k, fmt(d[k]), fmt(d[f"{k}_off"]), fmt(targets.get(k)))
        for k in (*keys, "seconds", "upstream_requests", "upstream_429", "courses_built")
    ]
    rows.append(("warm_failures", fmt(d["warm_failures"]), fmt(d["warm_failures_off"]), "-"))
    s.tables.append(Table(("measure", "budget on", "budget off", "target"), rows))
    s.notes.append(
        f"{cfg['readers']} readers (Zipf popularity) read through two API processes while "
        "`bundles warm --all` runs beside two worker nodes; the off run is cut after 90 s. "
        "The simulator's bucket holds R/5 (0.2 s), the budget's burst is R/20. The hot first "
        "reads all land in the first second, when some 45 readers each start a cold build of "
        "~8 sequential requests: about 360 requests at R, shared fairly among the readers."
    )
    timeline = d.get("timeline", {})
    for mode in ("on", "off"):
        if mode in timeline:
            served = [float(v) for v in timeline[mode]["served_per_second"]]
            refused = [float(v) for v in timeline[mode]["throttled_per_second"]]
            s.charts.append(
                Lines(
                    f"budget {mode}: upstream answers per second",
                    {"admitted (served)": served, "429": refused},
                    "requests / s",
                    target=float(cfg["rate"]),
                )
            )


SECTIONS: dict[str, tuple[str, str, Callable[[Section, dict[str, Any]], None]]] = {
    "build": ("Rebuild cost and bundle size", "python -m bench.build", section_build),
    "burst": ("Burst coalescing", "python -m bench.burst", section_burst),
    "freshness": ("Event to fresh bundle", "python -m bench.freshness", section_freshness),
    "stampede": ("Cache stampede on a cold bundle", "python -m bench.stampede", section_stampede),
    "egress": ("Redis egress per page read", "python -m bench.egress", section_egress),
    "api": ("Read API against a bare endpoint", "python -m bench.api", section_api),
    "coldstart": (
        "Cold start against a rate limit",
        "python -m bench.coldstart",
        section_coldstart,
    ),
}


def machine_of(doc: dict[str, Any]) -> str:
    """The machine line a run recorded, or what its config says about the machine."""
    machine = doc.get("machine")
    if isinstance(machine, str) and machine:
        return machine
    cpus = (doc.get("config") or {}).get("cpus")
    return f"not recorded by this benchmark ({cpus} CPUs)" if cpus else "not recorded"


def date_of(doc: dict[str, Any], path: Path) -> str:
    date = doc.get("date")
    if isinstance(date, str) and date:
        return date
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    return f"{mtime.isoformat(timespec='seconds')} (file time)"


def load_sections(out_dir: Path) -> list[Section]:
    """One section per JSON file: known benchmarks in ORDER first, then any others by name."""
    paths = {p.stem: p for p in out_dir.glob("*.json")}
    names = [n for n in ORDER if n in paths] + sorted(n for n in paths if n not in ORDER)
    sections: list[Section] = []
    for name in names:
        doc = json.loads(paths[name].read_text())
        title, command, fill = SECTIONS.get(
            name, (name, f"python -m bench.{name}", section_generic)
        )
        section = Section(name, title, command, machine_of(doc), date_of(doc, paths[name]))
        try:
            fill(section, doc)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            # The output changed shape: still report every number it holds.
            section = Section(name, title, command, section.machine, section.date)
            section.notes.append(f"(shown generically: the known layout did not fit: {exc!r})")
            section_generic(section, doc)
        sections.append(section)
    return sections


# --- output ---------------------------------------------------------------------------------------
def draw(section: Section, path: Path) -> None:
    """One PNG with a panel per chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(section.charts)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    for ax, chart in zip(axes[0], section.charts, strict=True):
        if isinstance(chart, Lines):
            draw_lines(ax, chart)
            continue
        width = 0.8 / len(chart.series)
        xs = range(len(chart.labels))
        for i, (name, values) in enumerate(chart.series.items()):
            offset = (i - (len(chart.series) - 1) / 2) * width
            bars = ax.bar([x + offset for x in xs], values, width, label=name)
            shown = ["" if math.isnan(v) else fmt(v) for v in values]
            ax.bar_label(bars, labels=shown, fontsize=7, padding=2)
        draw_target(ax, chart.target, chart.target_label)
        if chart.log:
            ax.set_yscale("log")
        crowded = len(chart.labels) > 4
        ax.set_xticks(
            list(xs),
            chart.labels,
            rotation=20 if crowded else 0,
            ha="right" if crowded else "center",
            fontsize=8,
        )
        ax.set_title(chart.title, fontsize=10)
        ax.set_ylabel(chart.ylabel, fontsize=8)
        ax.margins(y=0.15)
        if len(chart.series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{section.title} — {section.machine}, {section.date[:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_target(ax: Any, target: float | None, label: str) -> None:
    """The target as a dashed line with its label, when the chart has one."""
    if target is None:
        return
    ax.axhline(target, color="crimson", linestyle="--", linewidth=1)
    ax.annotate(
        label,
        (0.01, target),
        xycoords=("axes fraction", "data"),
        ha="left",
        va="bottom",
        color="crimson",
        fontsize=7,
    )


def draw_lines(ax: Any, chart: Lines) -> None:
    """A line chart panel: each series over seconds, the limit as a dashed line."""
    for name, values in chart.series.items():
        ax.plot(range(len(values)), values, label=name, linewidth=1)
    draw_target(ax, chart.target, chart.target_label)
    ax.set_title(chart.title, fontsize=10)
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel(chart.ylabel, fontsize=8)
    ax.legend(fontsize=7)


def table_md(table: Table) -> str:
    lines = [
        "| " + " | ".join(table.headers) + " |",
        "| " + " | ".join("---" for _ in table.headers) + " |",
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows
    ]
    return "\n".join(lines)


def markdown(sections: list[Section], images: dict[str, str]) -> str:
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python bench/report.py` from `bench/out/*.json`: edit the benchmarks, not "
        "this page. Each benchmark prints its numbers and writes its JSON; rerun it, then this "
        "script. Numbers are from the machine named in each section (the 2-core development VM "
        "unless it says otherwise), so compare ratios within one run rather than absolute times "
        "across machines.",
        "",
        "| benchmark | latest result | targets | machine | date |",
        "| --- | --- | --- | --- | --- |",
    ]
    parts += [
        f"| [{s.title}](#{anchor(s.title)}) | {s.headline} | {s.met} | {s.machine} | {s.date} |"
        for s in sections
    ]
    for s in sections:
        parts += ["", f"## {s.title}", "", f"`{s.command}` → `bench/out/{s.name}.json`", ""]
        parts += [f"**Machine:** {s.machine}. **Run:** {s.date}. **Targets:** {s.met}.", ""]
        parts += [f"{s.headline}.", ""] if s.headline else []
        for note in s.notes:
            parts += [note, ""]
        for table in s.tables:
            parts += [table_md(table), ""]
        if s.name in images:
            parts += [f"![{s.title}]({images[s.name]})"]
    return "\n".join(parts).rstrip() + "\n"


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return kept.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the JSON files are")
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown page to write")
    parser.add_argument("--img-dir", type=Path, default=IMG_DIR, help="where the PNGs go")
    args = parser.parse_args(argv)
    sections = load_sections(args.out_dir)
    if not sections:
        print(f"no benchmark outputs in {args.out_dir}", file=sys.stderr)
        return 1
    args.img_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    for s in sections:
        if s.charts:
            png = args.img_dir / f"bench-{s.name}.png"
            draw(s, png)
            images[s.name] = (
                Path("img", png.name).as_posix()
                if args.doc.parent == args.img_dir.parent
                else str(png)
            )
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(markdown(sections, images))
    print(f"wrote {args.doc} and {len(images)} plots in {args.img_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
