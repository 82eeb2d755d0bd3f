"""The README and docs/ hold together: every relative link resolves, to a file and to a heading
where it names one, and every page of docs/ (with its anchor) that the code and the tests cite exists."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITATION = re.compile(r"docs/[\w/.-]+\.md(?:#[\w-]+)?")


def anchors(page: Path) -> Iterator[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered."""
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


def broken(target: str, source: Path) -> str | None:
    """Why `target`, a link relative to `source`'s folder, does not resolve (None if it does)."""
    path, _, anchor = target.partition("#")
    page = (source.parent / path).resolve() if path else source
    if not page.exists():
        return f"{page.relative_to(REPO) if page.is_relative_to(REPO) else page} does not exist"
    if anchor and page.suffix == ".md" and anchor not in set(anchors(page)):
        return f"{page.relative_to(REPO)} has no heading #{anchor}"
    return None


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    problems = [f"{t}: {why}" for t in relative_links(page) if (why := broken(t, page))]
    assert not problems, problems


def test_every_docs_citation_in_the_code_resolves():
    files = [*(REPO / "harness").rglob("*.py"), *(REPO / "tests").rglob("*.py"), REPO / "README.md"]
    problems = [
        f"{f.relative_to(REPO)}: {c}: {why}"
        for f in files
        for c in set(CITATION.findall(f.read_text()))
        if (why := broken(c, REPO / "README.md"))
    ]
    assert not problems, problems


def test_the_readme_links_every_page_of_docs():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    unlinked = [p.relative_to(REPO) for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked]
    assert not unlinked, unlinked
