"""Reading the tables the command line prints (a header row, a rule, then rows in aligned columns)."""

from __future__ import annotations

import re

RULE = re.compile(r"^\s*─[─ ]*$")


def read_table(output: str) -> list[dict[str, str]]:
    """The rows of the first table in ``output``, by header; fails unless every cell starts where its header does
    (nothing straddles two columns)."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if RULE.match(line))
    header = lines[rule - 1]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip() or RULE.match(line):
            break
        for start in starts[1:]:
            assert line[start - 1 : start] in ("", " "), f"a cell straddles the column at {start}:\n{header}\n{line}"
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows
