"""The HTML report: one self-contained page (nothing outside it is fetched), every benchmark in the table and in its
own section with its label, user text escaped, the comparison when there is one, meter and hardware facts; written at
the session's end, by ``aienergyscore html``, and into pytest-html's report when that plugin writes one."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_aienergyscore.cli.main import main as cli_main
from pytest_aienergyscore.gate.verdicts import GateOutcome, GateSettings, Verdict, write_gate_file
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.quality import no_quality
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.records.store import RecordStore
from pytest_aienergyscore.report.files import write_session_files
from pytest_aienergyscore.report.frontier_plot import FRONTIER_FILE
from pytest_aienergyscore.report.html import HTML_FILE, read_session, render_page, write_session_html
from pytest_aienergyscore.report.label import LABEL_FILE
from pytest_aienergyscore.report.plot import PLOT_FILE
from pytest_aienergyscore.report.quality_view import quality_sort_key
from tests.support.quality_records import OFFLINE_REFERENCES, quality

pytest.importorskip("PIL.Image", reason="labels are drawn with Pillow: pip install 'pytest-aienergyscore[label]'")

HOSTILE = "<script>alert(1)</script>"
H100 = {
    "device": "cuda:0",
    "scope": "gpu",
    "name": "NVIDIA H100 80GB HBM3",
    "driver": "550.54.15",
    "power_limit_w": 700.0,
    "counter": "total energy (mJ)",
}


class Page(HTMLParser):
    """What a browser would find in the page: its tags with their attributes, and its visible text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def _record(nodeid: str, wh: float, samples: int = 1000, gpu: bool = True, model: str = "org/model") -> Record:
    scope, meter, kind = ("gpu", "nvml", "measured") if gpu else ("cpu", "estimate", "estimate")
    device = DeviceEnergy("cuda:0" if gpu else "cpu", scope, wh * 3600.0, kind, meter)
    warnings = () if gpu else ("window of 0.5 s spans fewer than 50 updates of the estimate counter: low confidence",)
    measurement = Measurement("forward", meter, kind, 12.0, (device,), warnings=warnings)
    environment = {"hostname": "ci-host", "cpu": "Test CPU", "cpu_count": 8, "python": "3.11.7", "versions": {}}
    environment["gpus"] = [H100] if gpu else []
    return Record(
        nodeid,
        "pytorch",
        model=model,
        task="text_classification",
        phases=[Phase("forward", measurement, samples)],
        meter={"name": meter, "kind": kind, "reason": f"{meter} was asked for"},
        environment=environment,
    )


def _session(tmp_path: Path, records: list[Record]) -> Path:
    """A session folder as a session's end leaves it: records.jsonl, run folders with labels, summary.json."""
    folder = tmp_path / "results" / "2026-01-01_00-00-00"
    folder.mkdir(parents=True)
    store = RecordStore(folder / "records.jsonl")
    for record in records:
        store.append(record)
    result = write_session_files(records, folder, {"session": folder.name, "meter": "nvml (measured) - test"})
    assert not result.errors
    return folder


@pytest.fixture
def records() -> list[Record]:
    return [
        _record("bench.py::test_big", 2.0),
        _record(f"bench.py::test_hostile[{HOSTILE}]", 0.5, model='org/"><img src=x onerror=alert(2)>'),
        _record("bench.py::test_on_cpu", 0.001, samples=10, gpu=False),
    ]


@pytest.fixture
def session(tmp_path: Path, records: list[Record]) -> Path:
    return _session(tmp_path, records)


def _page(session: Path) -> tuple[str, Page]:
    view, skipped = read_session(session)
    assert skipped == []
    text = render_page(view)
    return text, Page(text)


def test_a_hostile_test_id_and_model_name_are_shown_as_text_never_as_markup(session: Path) -> None:
    text, page = _page(session)
    assert HOSTILE not in text and "<img src=x" not in text
    assert len(page.all("script")) == 1  # the page's own sorting script, and no other
    assert all((attrs.get("src") or "").startswith("data:image/png;base64,") for attrs in page.all("img"))
    assert f"bench.py::test_hostile[{HOSTILE}]" in page.words
    assert 'org/"><img src=x onerror=alert(2)>' in page.words


def test_nothing_in_the_page_points_outside_it(session: Path) -> None:
    text, page = _page(session)
    links = [(tag, name, value) for tag, attrs in page.tags for name, value in attrs.items() if name in ("src", "href")]
    assert links, "the page should link to its own sections and hold its images"
    outside = [link for link in links if not (link[2] or "").startswith(("#", "data:image/png;base64,"))]
    assert outside == []
    assert not any(tag == "link" or (tag == "script" and "src" in attrs) for tag, attrs in page.tags)
    assert "@import" not in text and "url(" not in text
    [policy] = [a for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in (policy["content"] or "")


def test_every_benchmark_has_a_row_with_its_whole_id_and_a_section_of_its_own(
    session: Path, records: list[Record]
) -> None:
    text, _ = _page(session)
    table = text.split('<table id="results">', 1)[1].split("</table>", 1)[0]
    table_page = Page(table)
    assert len(table_page.all("tr")) == 1 + len(records)
    for number, record in enumerate(records, start=1):
        assert f'<section class="bench" id="b-{number}">' in text
        assert {"href": f"#b-{number}"} in table_page.all("a")
        assert record.nodeid in table_page.words


def test_each_runs_label_is_inside_the_page_byte_for_byte(session: Path, records: list[Record]) -> None:
    _, page = _page(session)
    inline = {base64.b64decode((a["src"] or "").split(",", 1)[1]) for a in page.all("img")}
    labels = {path.read_bytes() for path in session.glob(f"*/{LABEL_FILE}")}
    assert len(labels) == len(records) and labels <= inline


def test_a_session_without_labels_or_plot_still_renders_and_says_what_is_missing(session: Path) -> None:
    for path in [*session.glob(f"*/{LABEL_FILE}"), session / PLOT_FILE]:
        path.unlink(missing_ok=True)
    _, page = _page(session)
    assert page.all("img") == []
    assert page.words.count(f"no {LABEL_FILE} in") == 3
    assert f"no {PLOT_FILE} in this session" in page.words
    assert "bench.py::test_big" in page.words


def test_every_figure_says_what_it_covers_and_which_meter_produced_it(session: Path) -> None:
    text, page = _page(session)
    assert 'title="gpu/nvml: gpu energy only"' in text
    assert "cpu/estimate: cpu energy as estimate reports it" in page.words
    assert "gpu/nvml: gpu energy only" in page.words


def test_figures_carry_their_unrounded_value_for_sorting(session: Path, records: list[Record]) -> None:
    text, _ = _page(session)
    for record in records:
        assert f'data-sort="{record.wh_per_1000_queries()}"' in text
        assert f'data-sort="{record.total_wh()}"' in text


def test_warnings_and_every_not_comparable_reason_are_listed_per_benchmark(session: Path) -> None:
    _, page = _page(session)
    assert "window of 0.5 s spans fewer than 50 updates of the estimate counter: low confidence" in page.words
    assert "not comparable: ran on the CPU: no GPU energy was measured" in page.words
    assert "not comparable: energy is an estimate from CPU time, not a measurement" in page.words


def test_meter_and_hardware_facts_come_from_the_records(session: Path) -> None:
    _, page = _page(session)
    words = page.words
    assert "cuda:0: NVIDIA H100 80GB HBM3, driver 550.54.15, power limit 700 W, counter: total energy (mJ)" in words
    assert "Test CPU (8 logical cores)" in words and "nvml was asked for" in words
    assert "Session meter: nvml (measured) - test" in words


def test_the_comparison_shows_the_gates_verdicts_and_headline(session: Path) -> None:
    verdict = Verdict("bench.py::test_big", "regression", "wh_per_1000_queries", 1.0, 2.0, 100.0, reason="single runs")
    outcome = GateOutcome([verdict], GateSettings(fail_above=10.0), Path("baseline.json"), ["a note for you"])
    write_gate_file(outcome, session)
    _, page = _page(session)
    assert outcome.headline() in page.words
    assert verdict.label() in page.words and "+100.0%" in page.words
    assert "a note for you" in page.words and {"href": "#comparison"} in page.all("a")


def test_a_damaged_gate_file_is_one_line_on_the_page_not_a_failure(session: Path) -> None:
    (session / "gate.json").write_text('{"verdicts": 3}', encoding="utf-8")
    _, page = _page(session)
    assert "gate.json could not be read (TypeError" in page.words
    assert "bench.py::test_big" in page.words


def test_the_page_read_later_from_the_folder_is_the_page_the_session_wrote(
    session: Path, records: list[Record]
) -> None:
    at_the_end, _ = read_session(session, records)
    later, _ = read_session(session)
    assert render_page(at_the_end) == render_page(later)


def test_the_session_end_writes_the_asked_file_and_the_exports_copy(session: Path, records: list[Record]) -> None:
    asked, exports = session.parent / "deep" / "er" / "mine.html", session.parent / "exports"
    assert write_session_html(session, records, None, None) == []
    written = write_session_html(session, records, asked, exports)
    assert written == [asked, exports / HTML_FILE]
    assert asked.read_bytes() == (exports / HTML_FILE).read_bytes()
    assert asked.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_aienergyscore_html_writes_report_html_into_the_session_folder(
    session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["html", str(session)]) == 0
    assert capsys.readouterr().out.strip() == f"written: {session / HTML_FILE}"
    assert "bench.py::test_big" in Page((session / HTML_FILE).read_text(encoding="utf-8")).words
    other = session.parent / "elsewhere.html"
    assert cli_main(["html", str(session / "records.jsonl"), "-o", str(other)]) == 0
    assert other.is_file()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("missing", "missing: no such session folder"),
        ("results", "no records.jsonl here; give a session folder (results/<date-time>)"),
    ],
)
def test_aienergyscore_html_refuses_a_folder_that_is_not_a_session_in_one_line(
    session: Path, capsys: pytest.CaptureFixture[str], given: str, says: str
) -> None:
    assert cli_main(["html", str(session.parent.parent / given)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err


def test_a_torn_record_is_a_warning_and_the_others_are_reported(
    session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (session / "records.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"nodeid": "torn')
    assert cli_main(["html", str(session)]) == 0
    assert "aienergyscore html: warning:" in capsys.readouterr().err
    assert "bench.py::test_on_cpu" in (session / HTML_FILE).read_text(encoding="utf-8")


BENCH = """
import pytest

@pytest.mark.parametrize("size", [1, 2])
def test_bench(energy_meter, size):
    energy_meter.set(model="org/m", task="text_classification")
    with energy_meter.measure("forward", samples=10):
        sum(i * i for i in range(20_000 * size))

def test_plain():
    pass
"""


def test_pytest_html_gets_our_table_and_each_benchmarks_row_and_label(bench: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    bench.makepyfile(BENCH)
    result = bench.runpytest("--html=ph/report.html", "--self-contained-html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    text = (bench.path / "ph" / "report.html").read_text(encoding="utf-8")
    blob = Page(text)
    [data] = [a["data-jsonblob"] for a in blob.all("div") if a.get("data-jsonblob")]
    tests = json.loads(data or "{}")["tests"]
    extras = {test_id: [e for row in rows for e in row["extras"]] for test_id, rows in tests.items()}
    for size in (1, 2):
        found = extras[f"test_pytest_html_gets_our_table_and_each_benchmarks_row_and_label.py::test_bench[{size}]"]
        assert [e["format_type"] for e in found] == ["html", "image"]
        assert f"test_bench[{size}]" in found[0]["content"] and "cpu/estimate" in found[0]["content"]
        assert found[1]["content"].startswith("data:image/png;base64,")
    assert extras["test_pytest_html_gets_our_table_and_each_benchmarks_row_and_label.py::test_plain"] == []
    assert "AI Energy Score" in text and "Wh/1k queries" in text


def test_without_a_pytest_html_report_no_hook_of_ours_waits_for_it(bench: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    bench.makepyfile(
        BENCH
        + """
def test_hooks(request, energy_meter):
    assert request.config.pluginmanager.has_plugin("aienergyscore-per-test")
    assert not request.config.pluginmanager.has_plugin("aienergyscore-pytest-html")
"""
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_a_page_that_cannot_be_written_is_one_line_naming_it(session: Path, records: list[Record]) -> None:
    blocked = session.parent / "a-file"
    blocked.write_text("in the way", encoding="utf-8")
    with pytest.raises(OSError, match=r"^cannot write .*a-file/report\.html: ") as caught:
        write_session_html(session, records, blocked / "report.html", None)
    assert "\n" not in str(caught.value)


def test_a_session_with_energy_html_and_exports_writes_the_page_to_both(bench: pytest.Pytester) -> None:
    bench.makepyfile(BENCH)
    result = bench.runpytest("-p", "no:cacheprovider", "--energy-html=page.html", "--energy-exports=ci")
    result.assert_outcomes(passed=3)
    page, copy = bench.path / "page.html", bench.path / "ci" / HTML_FILE
    assert page.read_bytes() == copy.read_bytes()
    assert "::test_bench[2]" in Page(page.read_text(encoding="utf-8")).words
    result.stdout.fnmatch_lines([f"exports: *{page}*{copy}*"])


def test_a_session_without_energy_html_or_exports_writes_no_page(bench: pytest.Pytester) -> None:
    bench.makepyfile(BENCH)
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    assert list(bench.path.rglob("*.html")) == []


# -- quality beside energy ----------------------------------------------------------------------------------------

NO_REFERENCES = "text_classification: the dataset has no column of labels (looked for label, labels)"


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    figures = [
        quality("spearman", 0.81),
        quality("spearman", -0.2),
        quality("accuracy", 0.9, rate=True),
        no_quality(NO_REFERENCES),
    ]
    records = []
    for number, figure in enumerate(figures):
        record = _record(f"bench.py::test_{number}", 1.0 + number)
        record.metadata["quality"] = figure
        records.append(record)
    return _session(tmp_path, records)


def test_the_quality_column_sorts_by_metric_then_value_with_unscored_rows_last(scored: Path) -> None:
    text, page = _page(scored)
    assert len([attrs for attrs in page.all("th") if attrs.get("data-key") == "quality"]) == 1
    assert 'data-key="quality"><button type="button">quality</button>' in text  # a header that can be clicked
    view, _ = read_session(scored)
    keys = [quality_sort_key(record) for record in view.records]
    assert all(f'data-sort="{key}"' in text for key in keys if key)
    # the page's script compares these keys as text, blanks last: metrics grouped, values in numeric order
    order = sorted(range(len(keys)), key=lambda i: (keys[i] == "", keys[i].lower()))
    assert [view.records[i].nodeid for i in order] == [f"bench.py::test_{n}" for n in (2, 1, 0, 3)]


def test_a_benchmark_without_a_quality_figure_shows_the_scorers_reason_in_the_table_and_its_section(
    scored: Path,
) -> None:
    _, page = _page(scored)
    assert page.words.count(f"none: {NO_REFERENCES}") == 2  # its table cell and its facts


def test_each_benchmark_section_gives_its_quality_its_references_and_the_energy_per_correct_answer(
    scored: Path,
) -> None:
    _, page = _page(scored)
    assert f"accuracy 0.9 (higher is better); on 100 samples; built-in metric; references: {OFFLINE_REFERENCES}" in (
        page.words
    )
    assert "3.333 Wh per 1,000 correct answers (measured)" in page.words  # 3 Wh per 1,000 queries / 0.9 correct
    assert "spearman 0.81 (higher is better)" in page.words


def test_the_energy_against_quality_picture_is_inside_the_page(scored: Path) -> None:
    pytest.importorskip("matplotlib")
    _, page = _page(scored)
    data = (scored / FRONTIER_FILE).read_bytes()
    assert "Energy against quality" in page.words
    assert any(img.get("src") == "data:image/png;base64," + base64.b64encode(data).decode() for img in page.all("img"))
