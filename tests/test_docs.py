"""The README is a quickstart and docs/ holds the reference: these tests keep the two honest after every edit.

They read the package's own tables (the options, the file names, the sub-commands) and CI's script, so that a new
option, file or command that nobody documents, or a link broken by moving a section, fails here rather than on a
user's screen.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from pytest_aienergyscore.backends.optimum.experiment import DATASET_ATTACHMENT
from pytest_aienergyscore.backends.optimum.reading import LOG_FILE as OPTIMUM_LOG
from pytest_aienergyscore.backends.optimum.results import ATTACHMENT_NAMES
from pytest_aienergyscore.cli.main import build_parser
from pytest_aienergyscore.config.options import OPTIONS, OptionSpec
from pytest_aienergyscore.gate.verdicts import GATE_FILE
from pytest_aienergyscore.records.store import RECORDS_FILE
from pytest_aienergyscore.report import archive, exports, files
from pytest_aienergyscore.report.label import LABEL_FILE
from pytest_aienergyscore.report.plot import PLOT_FILE

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 200
# What .ci/run appends to the README's commands for CI's own sake (no cache folder, the reasons of skips).
CI_ONLY_ARGUMENTS = (" -p no:cacheprovider", " -rs")
# Written by the session but named nowhere as a constant: the summaries and the default baseline.
SESSION_FILES = ("summary.json", "summary.csv", "baseline.json")
# Being added to the CLI by the lead (issue 15): documented already, whether or not build_parser has it yet.
EXPECTED_COMMANDS = ("setup",)


def markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def fenced_blocks(text: str) -> list[str]:
    return [token.content for token in MarkdownIt().parse(text) if token.type == "fence"]


def ci_commands() -> list[str]:
    """The README's two commands as .ci/run runs them, without the arguments CI adds."""
    commands = []
    for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines():
        if not line.startswith("bash scripts/setup.sh && ") or " -m pytest " not in line:
            continue
        for extra in CI_ONLY_ARGUMENTS:
            line = line.replace(extra, "")
        commands.append(line.strip())
    return commands


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def option_row(spec: OptionSpec, rows: list[str]) -> str | None:
    """The options table's row whose first cell names the option's flag."""
    for row in rows:
        first_cell = row.split(" | ")[0]
        if re.search(rf"`{re.escape(spec.flag)}[ `]", first_cell):
            return row
    return None


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped except - and _, spaces become hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, with GitHub's -1, -2 suffixes for repeated headings."""
    tokens = MarkdownIt().parse(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        slug = github_slug(tokens[i + 1].content)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    """Link targets outside code (code spans and fences are not links), without web and mail addresses."""
    targets = []
    for token in MarkdownIt().parse(page.read_text(encoding="utf-8")):
        for child in token.children or ():
            href = child.attrGet("href") if child.type == "link_open" else None
            if isinstance(href, str) and not re.match(r"[a-z][a-z0-9+.-]*:", href):
                targets.append(href)
    return targets


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def test_the_readme_is_a_quickstart_under_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


def test_the_readme_shows_both_commands_exactly_as_ci_runs_them() -> None:
    commands = ci_commands()
    assert len(commands) == 2, f"expected the test command and the main job in .ci/run, found {commands}"
    blocks = fenced_blocks(README.read_text(encoding="utf-8"))
    for command in commands:
        assert any(command in block.splitlines() for block in blocks), f"not in a README code block: {command}"


@pytest.mark.parametrize("spec", OPTIONS, ids=lambda spec: spec.flag)
def test_every_option_is_in_the_options_page_with_its_env_variable_and_ini_key(spec: OptionSpec) -> None:
    row = option_row(spec, table_rows((DOCS / "options.md").read_text(encoding="utf-8")))
    assert row is not None, f"{spec.flag} has no row in docs/options.md"
    spellings = [spec.twin, spec.env, spec.ini]
    missing = [name for name in spellings if name and f"`{name}`" not in row and f"`{name} " not in row]
    assert not missing, f"the row of {spec.flag} in docs/options.md lacks {missing}"


def written_file_names() -> set[str]:
    names = {files.ENERGY_TXT, files.ENERGY_SUMMARY, files.REPORT, files.LOG, archive.MANIFEST, LABEL_FILE}
    names |= {PLOT_FILE, RECORDS_FILE, GATE_FILE, exports.GITHUB_BENCHMARK_FILE, exports.BENCHER_FILE}
    names |= {OPTIMUM_LOG, DATASET_ATTACHMENT, *ATTACHMENT_NAMES.values(), *SESSION_FILES}
    return names


def test_every_file_a_session_writes_is_in_the_files_page() -> None:
    text = (DOCS / "files.md").read_text(encoding="utf-8")
    missing = sorted(name for name in written_file_names() if f"`{name}`" not in text)
    assert not missing, f"docs/files.md does not describe {missing}"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"broken links in {page.relative_to(REPO)}: {broken}"


def test_every_docs_page_is_linked_from_the_readme_and_the_index() -> None:
    pages = {page.name for page in DOCS.glob("*.md")} - {"index.md"}
    readme_links = {Path(link.partition("#")[0]).name for link in relative_links(README)}
    index_links = {Path(link.partition("#")[0]).name for link in relative_links(DOCS / "index.md")}
    assert pages, "docs/ holds no reference pages"
    assert pages <= readme_links, f"not linked from README.md: {sorted(pages - readme_links)}"
    assert pages <= index_links, f"not linked from docs/index.md: {sorted(pages - index_links)}"


def test_every_aienergyscore_command_is_in_the_commands_page() -> None:
    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    commands = subcommands(build_parser()) | set(EXPECTED_COMMANDS)
    assert commands >= {"verify", "doctor", "protocol", "report", "run", "label", "merge"}
    missing = sorted(name for name in commands if f"aienergyscore {name}" not in text)
    assert not missing, f"docs/commands.md does not describe {missing}"
