"""The README is a landing page: short, its two commands as the Makefile and CI run them, every figure it quotes
taken from the one table of BENCHMARKS.md (the Makefile's own figures too), every link to a page that exists."""

from __future__ import annotations

import re
from pathlib import Path

from faceswap_flows.devstack.demo import next_steps

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
FIGURES_HEADING = "## The figures the README and the Makefile quote"
PAGES = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]

NUMBER = r"\d[\d,]*(?:\.\d+)?"
UNIT = r"(?:minutes?|min|hours?|seconds?|ms|s|tests|packages|cores|[GMK]i?B|px|%|images/s|frames/s|callbacks/s)"
FIGURE = re.compile(rf"(?<![\w.,/-]){NUMBER}(?:\s*(?:-|to)\s*{NUMBER})?\s*{UNIT}(?![\w/])")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCED = re.compile(r"^ *```.*?^ *```", re.M | re.S)


def figures(text: str) -> list[str]:
    return [" ".join(match.split()) for match in FIGURE.findall(text)]


def figures_table() -> str:
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert FIGURES_HEADING in text, "BENCHMARKS.md holds the one table of the figures the README quotes"
    return text.split(FIGURES_HEADING, 1)[1].split("\n## ", 1)[0]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, each space a hyphen."""
    headings = [line.lstrip("#").strip() for line in FENCED.sub("", page.read_text()).splitlines() if line[:1] == "#"]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCED.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    return broken


def test_the_readme_is_under_250_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines < 250, f"README.md has {lines} lines: move the detail to a page of docs/"


def test_every_figure_the_readme_quotes_is_in_the_benchmarks_table() -> None:
    quoted = figures(README.read_text())
    assert any(figure.endswith(" tests") for figure in quoted), "the README says how many tests make test runs"
    table = figures(figures_table())
    assert [figure for figure in quoted if figure not in table] == []


def test_every_figure_the_makefile_quotes_is_in_the_benchmarks_table() -> None:
    said = [line for line in MAKEFILE.read_text().splitlines() if line.startswith("#") or "echo " in line]
    quoted = figures("\n".join(said))
    assert any(figure.endswith(" packages") for figure in quoted), "the Makefile says what make demo installs"
    table = figures(figures_table())
    assert [figure for figure in quoted if figure not in table] == []


def test_the_two_commands_are_the_first_thing_to_run() -> None:
    text = README.read_text()
    first_block = FENCED.findall(text.split("## Quick start", 1)[1])[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:-1]]
    assert commands == ["make demo", "make test"]
    targets = re.findall(r"^([\w-]+):", MAKEFILE.read_text(), re.M)
    assert {"demo", "test"} <= set(targets)
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_links_a_page_of_each_topic() -> None:
    pages = [target.partition("#")[0] for target in LINK.findall(README.read_text())]
    linked = [page for page in pages if (ROOT / page).is_file()]
    topics = ["flows", "reliability", "security", "provenance", "scale", "benchmarks"]
    assert [topic for topic in topics if not any(topic in page.lower() for page in linked)] == []


def test_every_link_of_the_documentation_resolves() -> None:
    broken = {str(page.relative_to(ROOT)): broken_links(page) for page in PAGES}
    assert {page: links for page, links in broken.items() if links} == {}


def test_the_demo_prints_the_commands_the_readme_gives_for_its_servers(tmp_path: Path) -> None:
    section = README.read_text().split("## Next: the command line against the demo's servers", 1)[1].split("\n## ")[0]
    given = [
        line for block in FENCED.findall(section) for line in block.splitlines() if ".venv/bin/faceswap-flows " in line
    ]
    demo = tmp_path / "faceswap-media" / "demo"
    printed = next_steps(
        tmp_path,
        tmp_path / "prefect.toml",
        "http://127.0.0.1:4200/api",
        demo / "astronaut.png",
        demo / "grace_hopper.png",
    )
    assert [line.strip() for line in printed.splitlines() if ".venv/bin/faceswap-flows " in line] == given
