"""The repository explains itself: its README and docs link only to files it holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s#]*)(#[^)\s]*)?\)")
LOCAL_HOSTS = ("http://localhost", "http://127.0.0.1")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_stays_inside_the_repository_and_finds_its_file(document: Path) -> None:
    broken = []
    for match in LINK.finditer(document.read_text()):
        target = match.group(1)
        if not target:
            continue  # a link to a heading of the same page
        if "://" in target:
            if not target.startswith(LOCAL_HOSTS):
                broken.append(f"leaves the repository: {target}")
            continue
        resolved = (document.parent / target).resolve()
        if not resolved.is_relative_to(REPO):
            broken.append(f"leaves the repository: {target}")
        elif not resolved.exists():
            broken.append(f"no such file: {target}")
    assert broken == []


def test_the_documents_a_newcomer_starts_from_are_there() -> None:
    readme = (REPO / "README.md").read_text()
    for page in ("docs/architecture.md", "docs/domain.md", "docs/topics.md"):
        assert (REPO / page).is_file()
        assert f"]({page})" in readme


def test_every_page_the_code_and_deployment_files_name_is_there() -> None:
    """Comments and docstrings send readers to docs/<page>.md: the page must exist."""
    named = re.compile(r"\bdocs/[\w-]+\.md\b")
    missing = sorted(
        f"{path.relative_to(REPO)}: {page}"
        for folder in ("services", "contracts", "reference", "deploy", "bench", "tests")
        for path in (REPO / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".yaml", ".yml", ".sh", ".md", ".json")
        for page in set(named.findall(path.read_text(errors="replace")))
        if not (REPO / page).is_file()
    )
    assert missing == []
