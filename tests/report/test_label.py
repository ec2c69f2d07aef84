"""The energy label (label.png in every run folder, and `aienergyscore label`) and the session plot."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from importlib import metadata
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.cli.main import main as cli_main
from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.report import label, label_canvas
from pytest_aienergyscore.report.files import energy_summary, write_run_folder
from pytest_aienergyscore.report.label import (
    HEIGHT,
    LABEL_FILE,
    MARGIN,
    OK_FILL,
    STAMP_BAND,
    STAR_CENTERS,
    STAR_EDGE,
    STAR_EMPTY,
    STAR_EMPTY_EDGE,
    STAR_FILL,
    STAR_OUTER,
    STAR_ROW_TOP,
    WARN_FILL,
    WARN_TEXT,
    WIDTH,
    render_label,
)
from pytest_aienergyscore.report.label_data import LabelData, label_data
from pytest_aienergyscore.report.plot import PLOT_FILE, draw_plot, panels, write_plot
from pytest_aienergyscore.rules.tasks import get_task

Image = pytest.importorskip("PIL.Image")
ImageChops = pytest.importorskip("PIL.ImageChops")
pytest.importorskip("matplotlib")

H100 = "NVIDIA H100 80GB HBM3"


def record(task: str = "text_generation", wh: float = 30.0, queries: int = 1000, **changes: Any) -> Record:
    """A GPU record of ``wh`` Wh per 1,000 queries, comparable unless ``changes`` say otherwise."""
    device = DeviceEnergy("cuda:0", "gpu", wh * 3600.0 * queries / 1000, "measured", "nvml")
    phase = Phase("decode", Measurement("decode", "nvml", "measured", 60.0, (device,)), queries)
    spec = get_task(task) if task != "my_own_task" else None
    values: dict[str, Any] = {
        "nodeid": f"bench.py::test_{task}",
        "backend": "pytorch",
        "model": "acme/rocket-7b",
        "task": task,
        "model_class": "A" if task in ("text_generation", "reasoning") else None,
        "queries": queries,
        "phases": [phase],
        "meter": {"name": "nvml", "devices": [{"device": "cuda:0", "scope": "gpu", "name": H100}]},
        "environment": {"gpus": [{"device": "cuda:0", "scope": "gpu", "name": H100}], "cpu": "Xeon"},
        "dataset": {"name": spec.dataset, "official": True} if spec else {},
        "metadata": {"protocol": spec.default_protocol.to_dict(), "overrides": {}} if spec else {},
        "finished_at": 1_760_000_000.0,
    }
    values.update(changes)
    return Record(**values)


def rgb(image: Any, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(image.getpixel(xy))[:3]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def near(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


# -- the label ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wh", [30.0, 45.0, 80.0])  # 4, 3 and 1 stars in class A's bins
def test_the_earned_stars_are_filled_and_the_rest_empty(wh: float) -> None:
    summary = energy_summary(record(wh=wh))
    image = render_label(label_data(summary))
    assert image.size == (WIDTH, HEIGHT) == (520, 728)
    filled = [near(rgb(image, c), hex_rgb(STAR_FILL)) for c in STAR_CENTERS]
    empty = [near(rgb(image, c), hex_rgb(STAR_EMPTY)) for c in STAR_CENTERS]
    stars = summary["stars"]
    assert filled == [i < stars for i in range(5)] and empty == [i >= stars for i in range(5)]


def test_the_note_says_whether_the_result_is_comparable() -> None:
    comparable = render_label(label_data(energy_summary(record())))
    assert near(rgb(comparable, (MARGIN + 8, 588 + 53)), hex_rgb(OK_FILL))
    estimate = render_label(label_data(energy_summary(record(queries=4))))
    assert near(rgb(estimate, (MARGIN + 8, 588 + 40)), hex_rgb(WARN_FILL))


# -- an indicative label cannot pass for an official one -------------------------------------------------------------


WHITE = (255, 255, 255)


def star_insides(cx: int, cy: int) -> list[tuple[int, int]]:
    """Points well inside a star outside the band: its top point and its lower left point."""
    return [(cx, cy - 22), (cx - 12, cy + 18)]


def indicative() -> LabelData:
    """A 4-star label of a run that is not comparable (4 queries instead of 1,000)."""
    data = label_data(energy_summary(record(queries=4)))
    assert data.stars == 4 and not data.official
    return data


def test_an_indicative_label_draws_its_stars_hollow() -> None:
    image = render_label(indicative())
    for index, (cx, cy) in enumerate(STAR_CENTERS):
        assert all(near(rgb(image, xy), WHITE, 6) for xy in star_insides(cx, cy)), f"star {index} is not hollow"
        edge = STAR_EDGE if index < 4 else STAR_EMPTY_EDGE  # the earned ones still read by their outline
        assert near(rgb(image, (cx, cy - STAR_OUTER + 2)), hex_rgb(edge), 24), f"star {index} has no outline"


def test_an_indicative_label_runs_its_words_through_every_star() -> None:
    data = indicative()
    image = render_label(data)
    unstamped = image.copy()
    unstamped.paste(label._star_row(4, hollow=True, stamped=False), (MARGIN, STAR_ROW_TOP))
    left, top, right, bottom = ImageChops.difference(image, unstamped).getbbox()
    ringing = 3  # rows the supersampled patch's Lanczos scaling spreads an edge over
    assert STAMP_BAND[0] - ringing <= top <= STAMP_BAND[0] and STAMP_BAND[1] <= bottom <= STAMP_BAND[1] + ringing
    assert left <= STAR_CENTERS[0][0] - STAR_OUTER and right >= STAR_CENTERS[-1][0] + STAR_OUTER
    for index, (cx, _) in enumerate(STAR_CENTERS):
        ink = [
            (x, y)
            for x in range(cx - STAR_OUTER, cx + STAR_OUTER)
            for y in range(*STAMP_BAND)
            if near(rgb(image, (x, y)), hex_rgb(WARN_TEXT), 20)
        ]
        assert len(ink) > 40, f"star {index} carries no part of the words"


def test_an_estimate_is_indicative_even_if_its_summary_says_comparable() -> None:
    summary = {**energy_summary(record()), "energy_kind": "estimate", "meter": "estimate"}
    assert summary["comparable"] is True
    data = label_data(summary)
    assert data.estimate and not data.indicative and not data.official
    image = render_label(data)
    assert near(rgb(image, star_insides(*STAR_CENTERS[0])[0]), WHITE, 6)


def test_a_comparable_measured_label_has_filled_stars_and_no_band() -> None:
    data = label_data(energy_summary(record()))
    assert data.official
    image = render_label(data)
    gap = (STAR_CENTERS[0][0] + STAR_CENTERS[1][0]) // 2
    assert all(near(rgb(image, (gap, y)), WHITE, 6) for y in range(*STAMP_BAND))
    assert near(rgb(image, star_insides(*STAR_CENTERS[0])[0]), hex_rgb(STAR_FILL))


# The PNG bytes of comparable labels as they were before indicative labels were stamped; pinned for the Pillow,
# FreeType and font versions they were drawn with (another version anti-aliases differently).
PINNED_WITH = ("13.0.0", "2.14.3", "2020.10.30")
PINNED_SHA256 = {
    3.0: "64d58059c72a9c4ed256f80389e4109ec073cd661d2a7d7a9f9393941a62ded6",
    30.0: "3daee10f60af37c7095dcbd1fabd87689223cec233cb2381c96ab5f56d5b0f97",
    80.0: "79c52329235ae22cd7ff2bda4ee9d222a0eaa1d609e50827c09d88dcaa70f360",
}


@pytest.mark.parametrize("wh", sorted(PINNED_SHA256))
def test_a_comparable_label_is_byte_for_byte_what_it_was(wh: float) -> None:
    from PIL import __version__ as pillow
    from PIL import features

    versions = (pillow, features.version("freetype2"), metadata.version("ttf-opensans"))
    if versions != PINNED_WITH:
        pytest.skip(f"bytes pinned with Pillow/FreeType/ttf-opensans {PINNED_WITH}, not {versions}")
    png = label._png.__wrapped__(label_data(energy_summary(record(wh=wh))))  # drawn now: _png's cache left alone
    assert hashlib.sha256(png).hexdigest() == PINNED_SHA256[wh]


def test_label_data_carries_what_the_label_shows() -> None:
    data = label_data(energy_summary(record(queries=4)))
    assert (data.model, data.provider, data.task, data.model_class) == ("rocket-7b", "acme", "Text generation", "A")
    assert data.hardware == H100 and data.measured == "NVML energy counter, 4 queries"
    assert data.indicative is True and data.reasons == ("4 queries instead of the protocol's 1000 (figure scaled)",)
    assert data.date == energy_summary(record())["scored_at"] and len(data.date) == 10
    local = label_data({"model": "/models/my-llm", "device": "cpu", "hardware": {"cpu": "Xeon"}, "comparable": False})
    assert (local.model, local.provider, local.hardware, local.stars) == ("my-llm", "local model", "CPU: Xeon", None)


def test_fonts_come_from_the_font_package_not_the_system() -> None:
    pytest.importorskip("ttf_opensans")
    for weight in ("regular", "semibold", "bold", "extrabold"):
        path = label_canvas.font_file(weight)
        assert path is not None and path.suffix == ".ttf" and "ttf_opensans" in path.parts


def test_without_the_font_package_the_label_is_drawn_with_a_warning(monkeypatch) -> None:
    monkeypatch.setattr(label_canvas, "font_file", lambda weight: None)
    label_canvas.load_font.cache_clear()
    label_canvas._warn_missing_font.cache_clear()
    try:
        with pytest.warns(UserWarning, match="ttf-opensans is not installed"):
            image = render_label(label_data(energy_summary(record())))
    finally:
        label_canvas.load_font.cache_clear()
        label_canvas._warn_missing_font.cache_clear()
    assert image.size == (520, 728)


def test_without_pillow_the_run_folder_is_written_with_a_note(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    folder = write_run_folder(record(), tmp_path)
    assert not (folder / LABEL_FILE).exists()
    assert (folder / "GPU_ENERGY_SUMMARY.json").exists()
    assert "label.png not drawn: Pillow is not installed" in (folder / "run.log").read_text()


def test_every_run_folder_has_its_label_inside_the_archive(bench: pytest.Pytester) -> None:
    bench.makepyfile(
        test_bench="""
        import pytest

        @pytest.mark.energy(model="org/tiny", task="text_classification")
        def test_forward(energy_meter):
            with energy_meter.measure("forward", samples=2):
                sum(i * i for i in range(200_000))
        """
    )
    bench.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    [session] = [p for p in (bench.path / "results").iterdir() if p.is_dir()]
    [folder] = [p for p in session.iterdir() if p.is_dir()]
    with Image.open(folder / LABEL_FILE) as image:
        assert image.format == "PNG" and image.size == (520, 728)
    with zipfile.ZipFile(folder.with_name(folder.name + ".zip")) as zf:
        assert zf.read(f"{folder.name}/{LABEL_FILE}") == (folder / LABEL_FILE).read_bytes()
    assert cli_main(["verify", str(folder.with_name(folder.name + ".zip"))]) == 0
    assert (session / PLOT_FILE).is_file()
    row = (session / "summary.csv").read_text().splitlines()
    assert "stars" in row[0].split(",") and "stars_indicative" in row[0].split(",")


def test_label_command_draws_from_a_folder_or_its_zip(tmp_path: Path, capsys) -> None:
    folder = write_run_folder(record(), tmp_path / "session")
    from pytest_aienergyscore.report.archive import build_archive

    archive = build_archive(folder)
    for source, out in ((folder, tmp_path / "from-folder.png"), (archive, tmp_path / "from-zip.png")):
        assert cli_main(["label", str(source), "-o", str(out)]) == 0
        with Image.open(out) as image:
            assert image.size == (520, 728)
    assert (tmp_path / "from-folder.png").read_bytes() == (tmp_path / "from-zip.png").read_bytes()
    assert f"written: {tmp_path / 'from-zip.png'}" in capsys.readouterr().out


def test_label_command_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert cli_main(["label", str(tmp_path / "absent"), "-o", str(tmp_path / "x.png")]) == 2
    bogus = tmp_path / "bogus.zip"
    with zipfile.ZipFile(bogus, "w") as zf:
        zf.writestr("x/readme.txt", "no summary here")
    assert cli_main(["label", str(bogus), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such run folder" in err[0] and "expected one GPU_ENERGY_SUMMARY.json" in err[1]
    assert not (tmp_path / "x.png").exists()


# -- the session plot -----------------------------------------------------------------------------------------------


def test_one_panel_per_task_and_class_with_the_published_models() -> None:
    records = [
        record(wh=30.0),
        record(wh=3.0, model="acme/small"),
        record(wh=500.0, model_class="C"),
        record(task="summarization", wh=0.5),
        record(task="my_own_task", wh=1.0),  # not on the leaderboard: no panel
    ]
    found = {(p.task, p.model_class): p for p in panels(records)}
    assert set(found) == {("text_generation", "A"), ("text_generation", "C"), ("summarization", None)}
    assert [name for name, _, _ in found[("text_generation", "A")].ours] == ["rocket-7b", "small"]
    assert len(found[("text_generation", "A")].published) == 12  # the Dec 2025 class A models
    assert found[("summarization", None)].bands is not None and len(found[("summarization", None)].bands or ()) == 6


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = draw_plot([record(), record(task="image_classification", wh=0.2)], tmp_path / PLOT_FILE)
    assert path is not None
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 300
    assert draw_plot([record(task="my_own_task")], tmp_path / "none.png") is None


def test_without_matplotlib_the_plot_is_a_note(tmp_path: Path, monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path, note = write_plot([record()], tmp_path)
    assert path is None and note is not None and "matplotlib is not installed" in note
    assert not (tmp_path / PLOT_FILE).exists()


def test_label_png_round_trips_through_pillow() -> None:
    buffer = BytesIO()
    render_label(label_data(json.loads(json.dumps(energy_summary(record()))))).save(buffer, format="PNG")
    with Image.open(BytesIO(buffer.getvalue())) as image:
        assert image.mode == "RGB" and image.size == (520, 728)
