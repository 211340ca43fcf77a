"""Generated blocks in the README and docs/ pages: where each one lives and how it is rewritten.

A generated block sits between `<!-- <name>:start -->` and `<!-- <name>:end -->` in one Markdown file.
Two generators write them from the same run:

- `python -m tools.figures` (after pytest in `make test`): the security, fault and concurrency tables
  into docs/security.md (`figures`) and their one-line summary into README.md (`figures-summary`),
  and the fault campaign's figures into docs/security.md (`campaign`);
- `make bench` (`bench.publish`): the bench tables into docs/performance.md (`bench`) and their
  one-line summary into README.md (`bench-summary`).

`BLOCKS` is the single list of them: tests/docs checks that every one has its markers.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (file relative to the repository root, block name)
BLOCKS: tuple[tuple[str, str], ...] = (
    ("docs/security.md", "figures"),
    ("docs/security.md", "campaign"),
    ("README.md", "figures-summary"),
    ("docs/performance.md", "bench"),
    ("README.md", "bench-summary"),
)


class MissingMarkers(Exception):
    """The file lacks the start/end markers of a block (or has them more than once, or out of order)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def check_markers(text: str, name: str) -> str | None:
    """None when `text` holds exactly one start marker followed by exactly one end marker of `name`;
    otherwise what is wrong."""
    start, end = markers(name)
    starts, ends = text.count(start), text.count(end)
    if starts != 1 or ends != 1:
        return f"{start} found {starts} times, {end} found {ends} times (expected once each)"
    if text.index(start) > text.index(end):
        return f"{end} comes before {start}"
    return None


def replace_block(path: Path, name: str, content: str) -> bool:
    """Put `content` between the markers of `name` in `path`; True when the file changed.

    Raises MissingMarkers (and writes nothing) when the markers are not there exactly once, in order.
    """
    text = path.read_text(encoding="utf-8")
    problem = check_markers(text, name)
    if problem is not None:
        raise MissingMarkers(f"{path}: {problem}")
    start, end = markers(name)
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{content.strip(chr(10))}\n{end}{tail}"
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True
