#!/usr/bin/env python3
"""Turns a benchmark run's results.json into BENCHMARKS.md and the plot.

    python3 bench/report.py bench/runs/<stamp>/results.json --markdown bench/BENCHMARKS.md --plot bench/benchmarks.png

Every number is a median of the run's repeats; a ratio is latchkey's median over its
baseline's (or the peer's) median from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

TITLES = {
    "typename": "`{ __typename }`, user token",
    "trivial": "trivial query `viewer { details { name } }`",
    "page": "`viewer { authentications(first: 20) }`",
    "create": "`createUserAuthentication`, 1 KB credentials",
    "instance": "`createSolutionInstance`, 2 auth + 2 config values",
}
BASELINES = {"typename": "B0", "trivial": "B-get", "page": "B-page", "create": "B-create", "instance": "B-instance"}
THROUGHPUT_TARGETS = {"typename": 0.5, "trivial": 0.7, "page": 0.6, "create": 0.7, "instance": 0.7}
STATEMENT_TARGETS = {"trivial": (1, "at most 1"), "page": (1, "exactly 1")}
TAIL_TARGET = 1.5
GROWTH_TARGET = 1.3
IDLE_TARGET_MB = 40
PEAK_TARGET_MB = 150
PEER_THROUGHPUT_TARGET = 3.0
PEER_P99_TARGET = 0.5
DB_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Runs:
    def __init__(self, runs):
        self.runs = runs

    def select(self, server, workload, mode, rows=None):
        return [r for r in self.runs if r["server"] == server and r["workload"] == workload and r["mode"] == mode
                and (rows is None or r.get("rows") == rows)]

    def rps(self, server, workload, mode):
        return median(r["rps"] for r in self.select(server, workload, mode))

    def latency(self, server, workload, mode, key, rows=None):
        return median(r["latency_ms"][key] for r in self.select(server, workload, mode, rows))

    def failed(self, server, workload, mode):
        return sum(r["failed"] for r in self.select(server, workload, mode))

    def requests(self, server, workload, mode):
        return sum(r["failed"] + r["ok"] for r in self.select(server, workload, mode))


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits=2):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verdict(ok):
    return "n/a" if ok is None else ("**pass**" if ok else "**FAIL**")


def mb(kb):
    return None if kb is None else kb / 1024


def targets(kind, data, settings):
    """The rows of the targets table for one database: (what, target, measured, verdict)."""
    runs = Runs(data["runs"])
    rows = []
    modes = [f"c{c}" for c in settings["connections"]]
    workloads = [w for w in TITLES if w in settings["workloads"]]
    for workload in workloads:
        for mode in modes:
            measured = ratio(runs.rps("latchkey", workload, mode), runs.rps("baseline", workload, mode))
            target = THROUGHPUT_TARGETS[workload]
            rows.append((f"{TITLES[workload]} vs {BASELINES[workload]}, {mode[1:]} connections", f"≥ {target}×",
                         fmt(measured) + "×" if measured is not None else "n/a",
                         verdict(None if measured is None else measured >= target)))
        if workload in STATEMENT_TARGETS:
            limit, words = STATEMENT_TARGETS[workload]
            counted = data["statements"].get(workload, {}).get("latchkey", {}).get("per_request")
            ok = None if counted is None else (counted <= limit + 0.05 if workload == "trivial"
                                                else abs(counted - limit) < 0.05)
            rows.append((f"{TITLES[workload]}: statements per request", words, fmt(counted), verdict(ok)))
        if workload == "instance":
            failed = sum(runs.failed("latchkey", workload, mode) for mode in modes)
            total = sum(runs.requests("latchkey", workload, mode) for mode in modes)
            rows.append((f"{TITLES[workload]}: errors at {' and '.join(m[1:] for m in modes)} connections", "0",
                         f"{failed:,} of {total:,}", verdict(failed == 0 if total else None)))
    for workload in workloads:
        mine = ratio(runs.latency("latchkey", workload, "rate", "p99"), runs.latency("latchkey", workload, "rate", "p50"))
        theirs = ratio(runs.latency("baseline", workload, "rate", "p99"),
                       runs.latency("baseline", workload, "rate", "p50"))
        measured = ratio(mine, theirs)
        rows.append((f"tail at half saturation, {TITLES[workload]}: latchkey's p99/p50 over {BASELINES[workload]}'s",
                     f"≤ {TAIL_TARGET}×", f"{fmt(measured)}× ({fmt(mine)} vs {fmt(theirs)})",
                     verdict(None if measured is None else measured <= TAIL_TARGET)))
    small, large = settings["rows"], settings["rows_large"]
    growth = ratio(runs.latency("latchkey", "growth", "c1", "mean", large),
                   runs.latency("latchkey", "growth", "c1", "mean", small))
    rows.append((f"growth: a page at {large:,} rows over a page at {small:,}", f"≤ {GROWTH_TARGET}×",
                 fmt(growth) + "×" if growth is not None else "n/a",
                 verdict(None if growth is None else growth <= GROWTH_TARGET)))
    idle = mb(data["memory"].get("idle_kb", {}).get("latchkey"))
    rows.append(("memory: latchkey's RSS idle", f"≤ {IDLE_TARGET_MB} MB", f"{fmt(idle, 1)} MB",
                 verdict(None if idle is None else idle <= IDLE_TARGET_MB)))
    peaks = [r["peak_rss_kb"] for r in data["runs"] if r["server"] == "latchkey" and r.get("peak_rss_kb")]
    peak = mb(max(peaks)) if peaks else None
    rows.append(("memory: latchkey's peak RSS under any load above", f"≤ {PEAK_TARGET_MB} MB", f"{fmt(peak, 1)} MB",
                 verdict(None if peak is None else peak <= PEAK_TARGET_MB)))
    if kind == "postgres":
        for workload in workloads:
            if not runs.select("peer", workload, modes[0]):
                continue
            for mode in modes:
                more = ratio(runs.rps("latchkey", workload, mode), runs.rps("peer", workload, mode))
                rows.append((f"peer: {TITLES[workload]}, {mode[1:]} connections, throughput over the peer's",
                             f"≥ {PEER_THROUGHPUT_TARGET}×", fmt(more) + "×" if more is not None else "n/a",
                             verdict(None if more is None else more >= PEER_THROUGHPUT_TARGET)))
                tail = ratio(runs.latency("latchkey", workload, mode, "p99"), runs.latency("peer", workload, mode, "p99"))
                rows.append((f"peer: {TITLES[workload]}, {mode[1:]} connections, p99 over the peer's",
                             f"≤ {PEER_P99_TARGET}×", fmt(tail) + "×" if tail is not None else "n/a",
                             verdict(None if tail is None else tail <= PEER_P99_TARGET)))
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def raw_rows(data, settings):
    runs = Runs(data["runs"])
    rows = []
    modes = [f"c{c}" for c in settings["connections"]] + ["rate"]
    for workload in [w for w in TITLES if w in settings["workloads"]]:
        for mode in modes:
            for server in ["latchkey", "baseline", "peer"]:
                selected = runs.select(server, workload, mode)
                if not selected:
                    continue
                loads = [r["loadavg"] for r in selected]
                offered = median(r.get("offered_rate") for r in selected)
                label = "half saturation" + (f" ({offered:,.0f}/s)" if offered else "") if mode == "rate" \
                    else f"{mode[1:]} connections"
                rows.append((
                    TITLES[workload], label,
                    server if server != "baseline" else BASELINES[workload],
                    fmt(runs.rps(server, workload, mode)),
                    fmt(runs.latency(server, workload, mode, "p50")),
                    fmt(runs.latency(server, workload, mode, "p99")),
                    f"{runs.failed(server, workload, mode):,}",
                    " / ".join(f"{r['rps']:,.0f}" for r in selected),
                    f"{min(loads):.2f}–{max(loads):.2f}",
                ))
    return rows


def statement_rows(data):
    rows, details = [], []
    for workload, servers in data["statements"].items():
        for server, counted in servers.items():
            name = server if server != "baseline" else BASELINES.get(workload, "baseline")
            if "error" in counted:
                rows.append((TITLES.get(workload, workload), name, "n/a", "n/a", counted["error"], ""))
                continue
            background = counted.get("background") or {}
            rows.append((TITLES.get(workload, workload), name, fmt(counted["per_request"]),
                         fmt(counted.get("reprepares_per_request")),
                         f"{counted['requests']} requests, {counted['failed']} failed",
                         f"{background.get('taken_off', 0)} in {background.get('window_s', 0)} s"))
            if server == "latchkey":
                for sql, n in counted["statements"].items():
                    details.append((TITLES.get(workload, workload), fmt(n), "`" + sql[:160].replace("|", "\\|") + "`"))
    return rows, details


def growth_rows(data, settings):
    runs = Runs(data["runs"])
    rows = []
    for server in ["latchkey", "baseline", "peer"]:
        small = runs.latency(server, "growth", "c1", "mean", settings["rows"])
        large = runs.latency(server, "growth", "c1", "mean", settings["rows_large"])
        if small is None and large is None:
            continue
        rows.append((server if server != "baseline" else "B-page", fmt(small, 3), fmt(large, 3),
                     fmt(runs.latency(server, "growth", "c1", "p50", settings["rows"]), 3),
                     fmt(runs.latency(server, "growth", "c1", "p50", settings["rows_large"]), 3),
                     fmt(ratio(large, small)) + "×" if ratio(large, small) else "n/a"))
    return rows


def memory_rows(data):
    rows = []
    for server, idle in data["memory"].get("idle_kb", {}).items():
        peaks = [r["peak_rss_kb"] for r in data["runs"] if r["server"] == server and r.get("peak_rss_kb")]
        worst = max(peaks) if peaks else None
        where = next((f"{r['workload']} {r['mode']}" for r in data["runs"]
                      if r["server"] == server and r.get("peak_rss_kb") == worst), "")
        rows.append((server, fmt(mb(idle), 1), fmt(mb(worst), 1), where))
    return rows


def markdown(results, plot_name):
    settings = results["settings"]
    machine = results["machine"]
    out = ["# latchkey benchmarks", ""]
    if results.get("smoke"):
        out += ["> **SMOKE RUN: not a measurement.** This file comes from a shortened run (shorter runs, fewer "
                "rows, fewer repeats or one database) that only proves the harness works end to end. Run "
                "`bench/run` with its defaults on a quiet machine for real numbers.", ""]
    out += [
        f"Written by `{results['command']}` (bench/harness.py, bench/report.py) on {results['started']}, "
        f"latchkey at commit `{machine.get('commit')}`. The method is in [bench/README.md](README.md).",
        "",
        "## Machine",
        "",
        f"- {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB; "
        f"{machine.get('os')}, Linux {machine.get('kernel')}",
        f"- {machine.get('rustc')}; {machine.get('node')} (peer); {machine.get('postgres')}",
        f"- latchkey: sea-orm {machine.get('sea-orm')}, sqlx {machine.get('sqlx')}, "
        f"async-graphql {machine.get('async-graphql')}, axum {machine.get('axum')}, "
        f"libsqlite3-sys {machine.get('libsqlite3-sys')} (bundled SQLite)",
        f"- servers pinned to CPU {settings['server_cpu']}, load generator to CPU {settings['loadgen_cpu']}; "
        f"{settings['duration']:g} s runs after {settings['warmup']:g} s of warm-up; repeats: "
        f"{settings['repeats']}, interleaved (latchkey, baseline, peer, latchkey, …); load average recorded "
        f"before each run",
        f"- data: {settings['rows']:,} authentications for the paged end user; {settings['rows_large']:,} for "
        f"the growth check; whole run {results.get('seconds', 0) / 60:.0f} min",
        "",
        f"![throughput and latency]({plot_name})",
        "",
    ]
    summary = []
    for kind, data in results["databases"].items():
        verdicts = [row[3] for row in targets(kind, data, settings)]
        summary.append(f"- {DB_TITLES.get(kind, kind)}: {verdicts.count('**pass**')} of "
                       f"{len(verdicts) - verdicts.count('n/a')} targets met")
    out[out.index("## Machine"):out.index("## Machine")] = ["## Summary", "", *summary, ""]
    for kind, data in results["databases"].items():
        title = DB_TITLES.get(kind, kind)
        out += [f"## {title}", "", "### Targets", ""]
        out += [table(["what", "target", "measured", ""], targets(kind, data, settings)), ""]
        out += ["### Throughput and latency (medians)", "",
                "Latency at saturation is per request under that many connections; at half saturation the "
                "arrivals are " + settings.get("arrivals", "poisson") + " at half the server's own best "
                "throughput, and latency counts from when each request was due.", ""]
        out += [table(["workload", "load", "server", "req/s", "p50 ms", "p99 ms", "failed", "runs (req/s)",
                       "load avg"], raw_rows(data, settings)), ""]
        rows, details = statement_rows(data)
        source = ("PostgreSQL's own statement log (`log_statement = all` on the benchmark database; "
                  "BEGIN and COMMIT count)" if kind == "postgres" else
                  "SQLite's own C API inside the process, read from outside with gdb "
                  "(bench/sqlite_statements.py: the first `sqlite3_step` of each execution, and each "
                  "`sqlite3_exec` statement; BEGIN and COMMIT count). Re-prepares are the executions SQLite "
                  "found expired and compiled again")
        out += ["### Statements per request", "", f"Counted from {source}. A server's own timers (webhook "
                "deliveries, refreshes, the revocation epoch) run statements whether requests come or not: "
                "the same window is counted again without requests, and those statements are taken off "
                "(each statement text at most as often as it ran in the request window).", ""]
        out += [table(["workload", "server", "statements", "re-prepares", "sample", "timers' statements taken off"],
                      rows), ""]
        if details:
            out += ["<details><summary>latchkey's statements per request</summary>", "",
                    table(["workload", "per request", "statement"], details), "", "</details>", ""]
        profiles = data.get("profiles") or {}
        if profiles:
            out += ["### Where latchkey's time goes", "",
                    "Sampled with `perf record -F 999` on latchkey's process while it served each workload at 8 "
                    "connections (one more run like the others). Shares of all samples: by thread (`tokio-rt-worker` "
                    "holds the connections, `latchkey-work` runs the requests, `sqlx-sqlite-wor` runs SQLite, "
                    "`latchkey-log` writes the log), by crate (the first path segment of each Rust symbol; "
                    "`kernel` is system calls, scheduling and the network stack), and the heaviest symbols.", ""]
            prows = []
            for workload, profile in profiles.items():
                threads = ", ".join(f"{k} {v:.0f}%" for k, v in list(profile["threads"].items())[:4])
                crates = ", ".join(f"{k} {v:.1f}%" for k, v in list(profile["crates"].items())[:10])
                prows.append((TITLES.get(workload, workload), f"{profile['rps']:,.0f}", threads, crates))
            out += [table(["workload", "req/s while sampled", "threads", "crates"], prows), ""]
            for workload, profile in profiles.items():
                out += [f"<details><summary>{TITLES.get(workload, workload)}: the heaviest symbols</summary>", "",
                        table(["share", "symbol", "crate"],
                              [(f"{share:.2f}%", "`" + symbol.replace("|", "\\|") + "`", crate)
                               for share, symbol, crate in profile["symbols"]]), "", "</details>", ""]
        out += ["### Growth", "",
                "One connection, a page of 20 from the middle of the end user's authentications (a cursor "
                "there); mean and p50 latency in ms.", ""]
        out += [table(["server", f"mean at {settings['rows']:,}", f"mean at {settings['rows_large']:,}",
                       f"p50 at {settings['rows']:,}", f"p50 at {settings['rows_large']:,}", "ratio"],
                      growth_rows(data, settings)), ""]
        out += ["### Memory", "", "RSS from /proc: idle after start, and the peak (VmHWM, reset before each run).",
                ""]
        out += [table(["server", "idle MB", "peak MB", "peak during"], memory_rows(data)), ""]
        for note in data.get("notes", []):
            out += [f"- {note}"]
        out += [""]
    return "\n".join(out).rstrip() + "\n"


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no plot", file=sys.stderr)
        return False
    settings = results["settings"]
    kinds = list(results["databases"])
    workloads = [w for w in TITLES if w in settings["workloads"]]
    servers = [("latchkey", "#2563eb"), ("baseline", "#9ca3af"), ("peer", "#f59e0b")]
    figure, axes = plt.subplots(2, len(kinds), figsize=(7 * len(kinds), 9), squeeze=False)
    for column, kind in enumerate(kinds):
        runs = Runs(results["databases"][kind]["runs"])
        modes = [f"c{c}" for c in settings["connections"]]
        width = 0.8 / (len(servers) * len(modes))
        top, bottom = axes[0][column], axes[1][column]
        for s_index, (server, color) in enumerate(servers):
            for m_index, mode in enumerate(modes):
                offset = (s_index * len(modes) + m_index) * width - 0.4 + width / 2
                values = [runs.rps(server, w, mode) or 0 for w in workloads]
                if not any(values):
                    continue
                top.bar([i + offset for i in range(len(workloads))], values, width, color=color,
                        hatch="//" if m_index else None, edgecolor="white",
                        label=f"{server if server != 'baseline' else 'baselines'}, {mode[1:]} conn.")
            p50 = [runs.latency(server, w, "rate", "p50") for w in workloads]
            p99 = [runs.latency(server, w, "rate", "p99") for w in workloads]
            if any(v is not None for v in p99):
                offset = s_index * 0.8 / len(servers) - 0.4 + 0.4 / len(servers)
                xs = [i + offset for i in range(len(workloads))]
                bottom.bar(xs, [v or 0 for v in p99], 0.8 / len(servers), color=color, alpha=0.45,
                           label=f"{server if server != 'baseline' else 'baselines'} p99")
                bottom.bar(xs, [v or 0 for v in p50], 0.8 / len(servers), color=color,
                           label=f"{server if server != 'baseline' else 'baselines'} p50")
        for ax in (top, bottom):
            ax.set_xticks(range(len(workloads)))
            ax.set_xticklabels(workloads)
            ax.grid(axis="y", alpha=0.3)
        top.set_yscale("log")
        top.set_ylabel("requests per second (log)")
        top.set_title(f"{DB_TITLES.get(kind, kind)}: throughput at saturation")
        bottom.set_yscale("log")
        bottom.set_ylabel("latency, ms (log)")
        bottom.set_title(f"{DB_TITLES.get(kind, kind)}: latency at half saturation")
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
    if results.get("smoke"):
        figure.suptitle("SMOKE RUN: not a measurement", color="#b91c1c")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    plotted = plot(results, args.plot)
    text = markdown(results, args.plot.name)
    if not plotted:
        text = text.replace(f"![throughput and latency]({args.plot.name})", "(no plot: matplotlib is missing)")
    args.markdown.write_text(text)
    print(f"wrote {args.markdown}" + (f" and {args.plot}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
