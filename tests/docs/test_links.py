"""Every relative link and anchor in README.md and docs/*.md points somewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.markdown_links import Link, anchors, broken, links, slug

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    problems = [f"{page.name}:{link.line}: {why}" for link in links(page) if (why := broken(link, ROOT))]
    assert problems == []


def test_the_pages_link_to_each_other() -> None:
    """The README reaches every docs page (so every detail removed from it is one link away)."""
    targets = {(ROOT / link.target.partition("#")[0]).resolve() for link in links(ROOT / "README.md")}
    unreachable = [p.name for p in PAGES[1:] if p.resolve() not in targets]
    assert unreachable == []


def test_readme_shows_the_screenshots() -> None:
    images = {link.target for link in links(ROOT / "README.md") if link.target.startswith("docs/img/")}
    assert images == {"docs/img/connect.png", "docs/img/consent.png", "docs/img/connected.png"}
    for image in images:
        assert (ROOT / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("### 1. The Azure app", "1-the-azure-app"),
        ("### Last `make bench`", "last-make-bench"),
        ("## Security, faults and load", "security-faults-and-load"),
        (
            "## Environment of every function (set by template.yaml, and by local/run.py locally)",
            "environment-of-every-function-set-by-templateyaml-and-by-localrunpy-locally",
        ),
        ("## See [the API](docs/api.md) & more", "see-the-api--more"),
    ],
)
def test_slug_is_githubs(heading: str, anchor: str) -> None:
    assert slug(heading.lstrip("# ")) == anchor


def test_checker_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n## Part\n\n## Part\n\n"
        '[ok](page.md#part-1) [ok](#part) [ok](../other.md) ![ok](img.png) <a id="here"></a>\n'
        "[gone](missing.md) [bad anchor](../other.md#nowhere) [up](../../x.md) [web](https://example.com/x)\n"
        "```\n[in code](missing-too.md)\n```\n`[span](missing-three.md)`\n"
        "[ref]: nowhere.md\n",
        encoding="utf-8",
    )
    (tmp_path / "other.md").write_text("# Other\n", encoding="utf-8")
    (tmp_path / "docs" / "img.png").write_bytes(b"")
    found = links(page)
    assert [link.target for link in found if link.line == 7] == [
        "page.md#part-1",
        "#part",
        "../other.md",
        "img.png",
    ]
    problems = {link.target: broken(link, tmp_path) for link in found}
    assert {t for t, why in problems.items() if why} == {
        "missing.md",
        "../other.md#nowhere",
        "../../x.md",
        "nowhere.md",
    }
    assert "missing-too.md" not in problems
    assert "missing-three.md" not in problems
    assert anchors(page) >= {"page", "part", "part-1", "here"}
    assert broken(Link(page, 1, "#here"), tmp_path) is None
