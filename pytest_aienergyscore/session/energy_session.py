"""State of one pytest session's energy benchmarks: the meter (created on first use), the record store, and the
end-of-session writing of run folders, archives and summaries.

Kept apart from ``plugin.py`` so that the pytest wiring stays thin and this logic can be driven without pytest.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_aienergyscore.config.settings import Settings
from pytest_aienergyscore.meters import Meter, MeterUnavailable, create_meter
from pytest_aienergyscore.records.record import Record
from pytest_aienergyscore.records.store import RECORDS_FILE, RecordStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from pytest_aienergyscore.report.files import SessionFiles


class EnergySession:
    """One per pytest session (on the controller). Creates nothing on disk until the first record arrives."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: list[Record] = []
        self.session_id = time.strftime("%Y-%m-%d_%H-%M-%S")
        self._meter: Meter | None = None
        self._meter_error: str | None = None
        self._gpu_state: list[dict[str, Any]] | None = None
        self._environment: dict[str, Any] | None = None
        self._session_dir: Path | None = None
        self._store: RecordStore | None = None
        self.outcome: SessionFiles | None = None
        self._backend_cache: Any = None
        # An xdist worker keeps its records in memory for the controller, which alone writes files (see xdist.py).
        self.is_worker = False
        self.notes: list[str] = []  # lines for the end-of-session table (parallel workers, GPU pinning...)
        self.errors: list[str] = []  # files that could not be written, one line each: the session exits non-zero
        self.shard: dict[str, Any] | None = None  # {"run_id", "index", "count"} of a fleet sweep's share
        self._unsaved: list[tuple[str, str]] = []  # (test, why) of records records.jsonl could not take
        # Suspends pytest's output capture around a write (set by the plugin), so that progress reaches the terminal.
        self.outside_capture: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext

    @property
    def backend_cache(self) -> Any:
        """Loaded models, shared by the session's energy_star benchmarks (created on first use)."""
        if self._backend_cache is None:
            from pytest_aienergyscore.session.runner import BackendCache

            self._backend_cache = BackendCache()
        return self._backend_cache

    # -- meter ----------------------------------------------------------------------------------------------
    @property
    def meter(self) -> Meter:
        """The session's meter, created on first use; a meter that cannot work raises MeterUnavailable each time."""
        if self._meter is None:
            if self._meter_error is not None:
                raise MeterUnavailable(self._meter_error)
            s = self.settings
            try:
                self._meter = create_meter(
                    s.meter,
                    s.gpus,
                    s.cpu_watts,
                    self._cpu_scope(),
                    dcgm_urls=s.dcgm_urls,
                    dcgm_selector=s.dcgm_gpus,
                    dcgm_max_age_s=s.dcgm_max_age,
                )
            except MeterUnavailable as err:
                self._meter_error = f"--energy-meter {s.meter} ({s.source_of('meter')}): {err}"
                raise MeterUnavailable(self._meter_error) from None
            self._survey_gpus(self._meter)
        return self._meter

    def _cpu_scope(self) -> str:
        """--energy-cpu-scope when given; else where the backend's CPU work shows up (a local server's is in another
        process: the machine). A backend that meters itself does not use our meter for its work: this process."""
        s = self.settings
        if s.source_of("cpu_scope") != "default":
            return s.cpu_scope
        from pytest_aienergyscore.backends import BackendError, backend_class

        try:
            backend = backend_class(s.backend)
        except BackendError:
            return s.cpu_scope  # the benchmark that uses this backend fails on it, in its own words
        return s.cpu_scope if backend.meters_itself else backend.cpu_scope

    def _survey_gpus(self, meter: Meter) -> None:
        """Once, as the meter is made and so before the first benchmark: the metered GPUs' state (other processes,
        MIG, power limits, idle power over a few seconds), kept in every record's environment."""
        if self._gpu_state is None:
            from pytest_aienergyscore.meters.gpu_state import IDLE_SECONDS

            self._gpu_state = meter.survey_gpus(IDLE_SECONDS)

    def meter_description(self) -> str:
        try:
            meter = self.meter
        except MeterUnavailable as err:
            return f"unavailable: {err}"
        return f"{meter.name} ({meter.kind}) - {meter.reason}"

    @property
    def environment(self) -> dict[str, Any]:
        if self._environment is None:
            from pytest_aienergyscore.report.environment import collect_environment

            facts = self._meter.device_facts() if self._meter is not None else ()
            self._environment = collect_environment(facts)
            self._environment["gpu_state"] = self._gpu_state or []
        return self._environment

    # -- records --------------------------------------------------------------------------------------------
    @property
    def session_dir(self) -> Path:
        if self._session_dir is None:
            from pytest_aienergyscore.report.paths import unique_child

            self._session_dir = unique_child(self.settings.output_dir, self.session_id)
        return self._session_dir

    def use_shard_folder(self, folder: Path, shard: dict[str, Any]) -> None:
        """A share of a fleet sweep writes into ``<output>/<run id>/shard-<i>-of-<n>``, not a timestamped folder:
        every shard of the sweep must be found under one run id, each in a folder named after its share."""
        self._session_dir = folder
        self.shard = shard

    def share_session_dir(self, path: Path) -> None:
        """Use the xdist controller's session folder, so a worker's scratch files land where its results will."""
        self._session_dir = path

    def add(self, record: Record) -> None:
        """Keep a finished record: in memory first, so that whatever the disk does the session's table and files
        have it; then appended to records.jsonl, so that a crash later in the session loses nothing measured. A
        store that cannot be written costs that safety net, never the record: one line says so at the end."""
        if not record.environment:
            record.environment = self.environment
        if self.settings.carbon_intensity is not None:  # carried by the record: files rebuilt later say the same grams
            from pytest_aienergyscore.records.inference_figures import CARBON_INTENSITY_KEY

            record.metadata.setdefault(CARBON_INTENSITY_KEY, self.settings.carbon_intensity)
        self.records.append(record)
        if self.is_worker:
            return
        try:
            if self._store is None:
                self._store = RecordStore(self.session_dir / RECORDS_FILE)
            self._store.append(record)
        except OSError as err:
            self._unsaved.append((record.nodeid, self._why(err)))

    def output_problem(self) -> str | None:
        """Why this session's results could not be written (a file where a folder must be, a read-only place),
        found before any benchmark runs; None when they can. Leaves nothing behind."""
        s = self.settings
        places = [("output_dir", s.output_dir, "--energy-output")]
        places += [(dest, path.parent, flag) for dest, path, flag in self._file_options() if path is not None]
        folders = [("exports_dir", s.exports_dir, "--energy-exports"), ("autosave", s.autosave, "--energy-autosave")]
        places += [(dest, folder, flag) for dest, folder, flag in folders if folder is not None]
        for dest, folder, flag in places:
            problem = folder_problem(folder)
            if problem:
                return f"{flag} ({s.source_of(dest)}): {problem}"
        return None

    def _file_options(self) -> list[tuple[str, Path | None, str]]:
        s = self.settings
        return [
            ("save_baseline", s.save_baseline, "--energy-save-baseline"),
            ("json_path", s.json_path, "--energy-json"),
            ("html_path", s.html_path, "--energy-html"),
        ]

    # -- end of session -------------------------------------------------------------------------------------
    def finish(self, exitstatus: int | str = 0) -> SessionFiles:
        """Write a run folder and archive per record, then the session summary and plot. Never raises for a file:
        what could not be written is a line in ``errors``. Safe to call with no records."""
        from pytest_aienergyscore.report.files import SessionFiles, write_session_files

        if self.outcome is not None:
            return self.outcome
        if self.is_worker or not self.records:  # a worker's records are written by the controller
            self.outcome = SessionFiles(self._session_dir)
            self._release()
            return self.outcome
        try:
            session_dir = self.session_dir
        except OSError as err:
            outcome = SessionFiles(None)
            outcome.errors.append(f"cannot write results to {self.settings.output_dir}: {self._why(err)}")
        else:
            outcome = write_session_files(self.records, session_dir, self._summary_meta(exitstatus))
        self.errors += self._unsaved_lines() + outcome.errors
        self.notes += outcome.notes
        self._release()
        self.outcome = outcome
        return outcome

    def _summary_meta(self, exitstatus: int | str) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "exit_status": str(exitstatus),
            **({"shard": self.shard} if self.shard is not None else {}),
            "meter": self.meter_description() if self._meter or self._meter_error else self._recorded_meter(),
            "settings": {
                "backend": self.settings.backend,
                "meter": self.settings.meter,
                "gpus": list(self.settings.gpus),
            },
        }

    def _why(self, err: OSError) -> str:
        """An OSError in words: "results is a file" rather than "File exists" when a file is in the way."""
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            blocking = file_in_the_way(self.settings.output_dir)
            if blocking is not None:
                return f"{blocking} is a file"
        return err.strerror or str(err)

    def _unsaved_lines(self) -> list[str]:
        if not self._unsaved:
            return []
        store = self._store.path if self._store is not None else self.settings.output_dir / "<session>" / RECORDS_FILE
        reasons = ", ".join(dict.fromkeys(reason for _, reason in self._unsaved))
        return [
            f"{len(self._unsaved)} record(s) could not be added to {store} ({reasons}): they are in this table, "
            "but `aienergyscore report` cannot rebuild their files later"
        ]

    def _release(self) -> None:
        if self._backend_cache is not None:
            self._backend_cache.close()
        if self._meter is not None:
            self._meter.close()

    def _recorded_meter(self) -> str | None:
        """The meter as the records describe it, for an xdist controller that never created one itself."""
        info = self.records[0].meter if self.records else {}
        return f"{info['name']} ({info.get('kind')}) - {info.get('reason', '')}" if info.get("name") else None


def file_in_the_way(folder: Path) -> Path | None:
    """The file standing where ``folder`` or one of its parents must be, if any."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def folder_problem(folder: Path) -> str | None:
    """Why files could not be written into ``folder``, found by making it (and any missing parents), creating and
    removing a file in it, and removing the folders it made; None when that works."""
    blocking = file_in_the_way(folder)
    if blocking is not None:
        return f"{folder} cannot be a folder: {blocking} is a file"
    made: list[Path] = []
    try:
        for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
            missing.mkdir()
            made.append(missing)
        probe = folder / f".aienergyscore-probe.tmp-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"{folder} cannot be written: {err.strerror or err}"
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()
    return None
