"""Relative links and anchors of Markdown files, resolved the way GitHub renders them.

Links: `[text](target)`, `![alt](target)`, reference definitions `[x]: target`, and `href` / `src` of
inline HTML, outside fenced code blocks and code spans. Links with a scheme (https:, mailto:) are not
followed. Anchors: the GitHub slugs of the target page's headings (duplicates get -1, -2, ...) and
explicit `<a id>` / `<a name>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXPLICIT_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line without code spans) for every line outside fenced code blocks."""
    lines: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _CODE_SPAN.sub("", line)))
    return lines


def links(path: Path) -> list[Link]:
    found: list[Link] = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in _INLINE.finditer(line)] + [m.group(1) for m in _HTML.finditer(line)]
        reference = _REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        found += [Link(path, number, t) for t in targets]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation removed, spaces → -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) → text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found: set[str] = set(_EXPLICIT_ANCHOR.findall(text))
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def broken(link: Link, root: Path) -> str | None:
    """Why `link` points nowhere, or None when it resolves (external links are not checked)."""
    target = link.target
    if not target or _SCHEME.match(target) or target.startswith("//"):
        return None
    path_part, _, fragment = target.partition("#")
    path_part = path_part.split("?", 1)[0]
    resolved = (link.source.parent / path_part).resolve() if path_part else link.source.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return f"{target}: outside the repository"
    if not resolved.exists():
        return f"{target}: no such file"
    if fragment:
        if resolved.is_dir() or resolved.suffix.lower() != ".md":
            return f"{target}: an anchor into something that is not a Markdown page"
        if fragment not in anchors(resolved):
            return f"{target}: no heading or anchor #{fragment} in {resolved.name}"
    return None
