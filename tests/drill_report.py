"""The rows of the fault drills' summary table (printed at the end of the test session)."""

from __future__ import annotations

ROWS: list[dict[str, object]] = []
COLUMNS = (
    "fault",
    "jobs",
    "submissions",
    "charges",
    "credits",
    "callbacks acked",
    "results stored",
    "lost",
    "ledger charged (possibly)",
)


def record(**row: object) -> None:
    ROWS.append(row)


def table() -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in ROWS)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS) for r in ROWS]
    return "\n".join(lines)
