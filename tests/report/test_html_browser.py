"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) opens the page a session wrote with
``--energy-html``, and what it renders is checked as text; the sorting script is run by the browser (``#sort=KEY``
clicks that header once the page has loaded), and a screenshot is kept for people to look at.

Skipped, in one line, where chromium is not installed (``scripts/setup.sh`` installs it where it can).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium): no browser to open the report in"
)
SCREENSHOT = Path("/tmp/html_report.png")  # where a person (and the note) finds the last one taken

# Two benchmarks whose order by energy per 1,000 queries is the reverse of the order they run in: a heavy loop over
# one query first, then a light one over 1,000.
BENCH = """
import pytest

@pytest.mark.energy(model="org/heavy", task="text_classification")
def test_a_heavy(energy_meter):
    with energy_meter.measure("forward", samples=1):
        sum(i * i for i in range(400_000))

@pytest.mark.energy(model="org/light", task="text_classification")
def test_b_light(energy_meter):
    with energy_meter.measure("forward", samples=1000):
        sum(i * i for i in range(40_000))
"""


class Rendered(HTMLParser):
    """The rendered DOM: its text (scripts and styles left out) and the test ids of the results table, in order."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.row_ids: list[str] = []
        self._in: list[str] = []
        self._in_results = False
        self._id_cell = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in.append(tag)
        values = dict(attrs)
        self._in_results = self._in_results or (tag == "table" and values.get("id") == "results")
        self._id_cell = self._in_results and tag == "td" and values.get("class") == "id"

    def handle_endtag(self, tag: str) -> None:
        if self._in:
            self._in.pop()
        self._in_results = self._in_results and tag != "table"
        self._id_cell = False

    def handle_data(self, data: str) -> None:
        if self._id_cell:
            self.row_ids.append(data.strip())
        if not (set(self._in) & {"script", "style", "title"}):
            self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def _chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium once; its own profile folder, so that parallel runs never share a lock."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture
def report(bench: pytest.Pytester) -> Path:
    """The page a real session of the two benchmarks wrote with ``--energy-html``."""
    bench.makepyfile(test_bench=BENCH)
    page = bench.path / "report" / "energy.html"
    result = bench.runpytest("-p", "no:cacheprovider", f"--energy-html={page}")
    result.assert_outcomes(passed=2)
    assert str(page) in result.stdout.str()  # the summary's exports line names it
    return page


def _open(report: Path, tmp_path: Path, fragment: str = "") -> Rendered:
    return Rendered(_chromium(tmp_path / "profile", "--dump-dom", report.as_uri() + fragment))


def test_the_browser_renders_every_row_the_notes_and_the_meter_facts(report: Path, tmp_path: Path) -> None:
    page = _open(report, tmp_path)
    assert page.row_ids == ["test_bench.py::test_a_heavy", "test_bench.py::test_b_light"]  # the order they ran in
    words = page.words
    for expected in (
        "AI Energy Score report",
        "cpu/estimate",
        "Warnings",
        "not comparable: ran on the CPU: no GPU energy was measured",
        "not comparable: energy is an estimate from CPU time, not a measurement",
        "Meter and hardware",
        "estimated CPU energy of this pytest process",
        "GPUs none metered (no GPU did the work)",
        "pytest-aienergyscore",
        "in the order the benchmarks ran",
    ):
        assert expected in words, expected


def test_clicking_the_energy_header_sorts_the_rows_both_ways(report: Path, tmp_path: Path) -> None:
    ascending = _open(report, tmp_path, "#sort=wh-1k-queries")
    assert ascending.row_ids == ["test_bench.py::test_b_light", "test_bench.py::test_a_heavy"]
    assert "sorted by Wh/1k queries, ascending" in ascending.words
    descending = _open(report, tmp_path, "#sort=-wh-1k-queries")
    assert descending.row_ids == ["test_bench.py::test_a_heavy", "test_bench.py::test_b_light"]
    assert "sorted by Wh/1k queries, descending" in descending.words
    by_name = _open(report, tmp_path, "#sort=-test-id")
    assert by_name.row_ids == ["test_bench.py::test_b_light", "test_bench.py::test_a_heavy"]


def test_a_screenshot_of_the_page_shows_it_drawn(report: Path, tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    shot = tmp_path / "html_report.png"
    _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    with image_module.open(shot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text, tables and the labels, not a blank page
    shutil.copyfile(shot, SCREENSHOT)


# Three benchmarks that give their own quality (energy_meter.set(quality=...)): two metrics, values out of run order,
# and one never scored.
SCORED = """
def _bench(energy_meter, quality=None):
    energy_meter.set(model="org/m", task="text_classification")
    if quality is not None:
        energy_meter.set(quality=quality)
    with energy_meter.measure("forward", samples=10):
        sum(i * i for i in range(20_000))

def test_a(energy_meter):
    _bench(energy_meter, {"metric": "spearman", "value": 0.81, "higher_is_better": True})

def test_b(energy_meter):
    _bench(energy_meter)

def test_c(energy_meter):
    _bench(energy_meter, {"metric": "spearman", "value": -0.2, "higher_is_better": True})

def test_d(energy_meter):
    _bench(energy_meter, {"metric": "accuracy", "value": 0.9, "higher_is_better": True, "rate": True})
"""


def test_clicking_the_quality_header_groups_metrics_and_orders_values_with_unscored_rows_last(
    bench: pytest.Pytester, tmp_path: Path
) -> None:
    bench.makepyfile(test_scored=SCORED)
    page = bench.path / "scored.html"
    bench.runpytest("-p", "no:cacheprovider", f"--energy-html={page}").assert_outcomes(passed=4)
    ascending = _open(page, tmp_path, "#sort=quality")
    assert [row.rsplit("::", 1)[-1] for row in ascending.row_ids] == ["test_d", "test_c", "test_a", "test_b"]
    descending = _open(page, tmp_path, "#sort=-quality")
    assert [row.rsplit("::", 1)[-1] for row in descending.row_ids] == ["test_a", "test_c", "test_d", "test_b"]
