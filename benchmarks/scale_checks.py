"""The checks of issue 18 on the figures of a scale drill (scale_drill.py), as a table: what was measured, the
target, met or not."""

from __future__ import annotations

import os
import time
from typing import Any

from receiver_kill import receiver_check

CALLBACKS_PER_S, RSS_MB, RESULTS_PER_S = 300, 300, 100


def checks(f: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(check, figure, target, met) rows."""
    jobs, trigger = f.get("jobs", 0), f.get("trigger_jobs", 0)
    workload, cache = f.get("workload", {}), f.get("cache", {})
    dropped = sum(f.get("dropped", {}).values()) if "dropped" in f else -1
    killed = f.get("killed", {})
    return [
        (
            "a distinct input per job, each a real swap",
            f"{workload.get('distinct_sources', '?')} distinct sources; sandbox swaps computed {cache.get('misses')},"
            f" cache hits {cache.get('hits')}",
            "swaps == jobs",
            cache.get("misses") == jobs and cache.get("hits") == 0,
        ),
        (
            "batch run Completed, every item submitted",
            f"{f.get('batch_state')}: {f.get('submitted')} submitted, {f.get('failed')} failed",
            "Completed, 0 failed",
            f.get("batch_state") == "Completed" and f.get("failed") == 0,
        ),
        (
            "messages dropped (every log scanned)",
            str(dropped),
            "0",
            dropped == 0,
        ),
        (
            "results written (inotify), exactly once",
            f"{f.get('results_written')} of {jobs} (stored {f.get('stored')}), "
            f"{len(f.get('results_written_twice', []))} twice",
            "all, once",
            f.get("stored") == f.get("results_written") == jobs and not f.get("results_written_twice"),
        ),
        (
            "aifaceswap.task.submitted events in the API",
            f"{f.get('submitted_events')} of {jobs}",
            "all",
            f.get("submitted_events") == jobs,
        ),
        (
            "task runs / flow runs not in a final state",
            f"{f.get('task_runs_not_final')} of {f.get('task_runs')} / {f.get('flow_runs_not_final')} of "
            f"{f.get('flow_runs')}",
            "0 / 0",
            f.get("task_runs_not_final") == 0 and f.get("flow_runs_not_final") == 0 and bool(f.get("task_runs")),
        ),
        (
            "flow runs Failed or Crashed",
            str(f.get("flow_runs_failed")),
            "0",
            f.get("flow_runs_failed") == 0,
        ),
        (
            "store-result runs for the store-by: trigger jobs",
            f"{f.get('trigger_jobs_with_run')} of {trigger} ({f.get('store_result_runs_completed')} Completed)",
            "all, Completed",
            f.get("trigger_jobs_with_run") == f.get("store_result_runs_completed") == trigger,
        ),
        (
            "receiver callbacks/s (all callbacks released at once)",
            f"{f.get('callbacks_per_s')} /s ({jobs} in {f.get('receive_seconds')} s)",
            f">= {CALLBACKS_PER_S}",
            (f.get("callbacks_per_s") or 0) >= CALLBACKS_PER_S,
        ),
        (
            "results stored/s (release -> last result stored)",
            f"{f.get('results_per_s')} /s ({jobs} in {f.get('release_to_last_stored_seconds')} s; callback -> stored "
            f"p50 {f.get('callback_to_stored_p50_s')} s, p95 {f.get('callback_to_stored_p95_s')} s)",
            f">= {RESULTS_PER_S}",
            (f.get("results_per_s") or 0) >= RESULTS_PER_S,
        ),
        (
            "receiver peak RSS (VmHWM)",
            f"{f.get('receiver_peak_rss_mb')} MB",
            f"< {RSS_MB} MB",
            0 < (f.get("receiver_peak_rss_mb") or 0) < RSS_MB,
        ),
        (
            "API server killed mid-run, run completes",
            f"{killed.get('process')} SIGKILLed {killed.get('after_seconds')} s in; run ended in "
            f"{f.get('seconds', 0):.0f} s"
            if killed
            else "no kill asked",
            "killed, run completes",
            bool(killed),
        ),
        receiver_check(f),
    ]


def print_checks(figures: dict[str, Any]) -> bool:
    """Print the workload and the checks as a table; True if every check is met."""
    rows = checks(figures)
    workload = figures.get("workload", {})
    print(
        f"\nscale drill, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores; "
        f"{figures.get('topology')}\nworkload: {figures.get('jobs')} jobs ({figures.get('submitted')} batch items, "
        f"store-by: sweep; {figures.get('trigger_jobs')} faceswap flow runs, store-by: trigger); photos "
        f"{workload.get('photo_px', 'package photos')}, {workload.get('photo_kb_mean', '?')} KB, a swap "
        f"{workload.get('swap_cpu_ms', '?')} ms CPU (sandbox, all in: {figures.get('sandbox_cpu_ms_per_job')} ms/job)"
    )
    head = ("check", "figure", "target", "met")
    table = [head, *((name, figure, target, "yes" if met else "NO") for name, figure, target, met in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * width for width in widths))
    if sweeps := figures.get("store_results_runs"):
        print(
            f"store-results runs: {sweeps['runs']} ({sweeps['completed']} Completed), run times "
            f"{sweeps['run_seconds']} s; release -> all stored, pool idle: {figures.get('release_to_stored_seconds')} s"
        )
    if bare := figures.get("bare_baseline"):
        print(
            f"bare script (fetch, label, sign, write the same {bare['results']} results, no Prefect): "
            f"{bare['per_s']} /s ({bare['seconds']} s, {bare['cpu_ms_per_result']} ms CPU each); flows "
            f"{figures.get('results_per_s')} /s: ratio {figures.get('results_per_s_ratio_to_bare')}; load while "
            f"storing {figures.get('load_while_storing')}"
        )
    if figures.get("retried"):
        print(f"sent again, not lost: {figures['retried']}")
    return all(met for *_, met in rows)
