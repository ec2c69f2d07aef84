"""State of one pytest session's energy benchmarks: the meter (created on first use), the record store, and the
end-of-session writing of run folders, archives and summaries.

Kept apart from ``plugin.py`` so that the pytest wiring stays thin and this logic can be driven without pytest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .meters import Meter, MeterUnavailable, create_meter
from .records import Record, RecordStore
from .settings import Settings

RECORDS_FILE = "records.jsonl"


@dataclass
class WrittenRun:
    record: Record
    folder: Path | None
    archive: Path | None
    error: str | None = None


@dataclass
class SessionOutcome:
    session_dir: Path | None
    runs: list[WrittenRun] = field(default_factory=list)
    summary_json: Path | None = None
    summary_csv: Path | None = None
    plot: Path | None = None


class EnergySession:
    """One per pytest session (on the controller). Creates nothing on disk until the first record arrives."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.records: list[Record] = []
        self.session_id = time.strftime("%Y-%m-%d_%H-%M-%S")
        self._meter: Meter | None = None
        self._meter_error: str | None = None
        self._environment: dict[str, Any] | None = None
        self._session_dir: Path | None = None
        self._store: RecordStore | None = None
        self.outcome: SessionOutcome | None = None
        self._backend_cache: Any = None
        # An xdist worker keeps its records in memory for the controller, which alone writes files (see xdist.py).
        self.is_worker = False
        self.notes: list[str] = []  # lines for the end-of-session table (parallel workers, GPU pinning...)

    @property
    def backend_cache(self) -> Any:
        """Loaded models, shared by the session's energy_star benchmarks (created on first use)."""
        if self._backend_cache is None:
            from .runner import BackendCache

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
                    # a local vllm server's CPU work is in another process: count the machine unless told otherwise
                    "machine" if s.backend == "vllm" and s.source_of("cpu_scope") == "default" else s.cpu_scope,
                    dcgm_urls=s.dcgm_urls,
                    dcgm_selector=s.dcgm_gpus,
                    dcgm_max_age_s=s.dcgm_max_age,
                )
            except MeterUnavailable as err:
                self._meter_error = f"--energy-meter {s.meter} ({s.source_of('meter')}): {err}"
                raise MeterUnavailable(self._meter_error) from None
        return self._meter

    def meter_description(self) -> str:
        try:
            meter = self.meter
        except MeterUnavailable as err:
            return f"unavailable: {err}"
        return f"{meter.name} ({meter.kind}) - {meter.reason}"

    @property
    def environment(self) -> dict[str, Any]:
        if self._environment is None:
            from .environment import collect_environment

            facts = self._meter.device_facts() if self._meter is not None else ()
            self._environment = collect_environment(facts)
        return self._environment

    # -- records --------------------------------------------------------------------------------------------
    @property
    def session_dir(self) -> Path:
        if self._session_dir is None:
            from .report.paths import unique_child

            self._session_dir = unique_child(self.settings.output_dir, self.session_id)
        return self._session_dir

    def share_session_dir(self, path: Path) -> None:
        """Use the xdist controller's session folder, so a worker's scratch files land where its results will."""
        self._session_dir = path

    def add(self, record: Record) -> None:
        """Keep a finished record, on disk at once (a later crash must not lose it)."""
        if not record.environment:
            record.environment = self.environment
        if not self.is_worker:
            if self._store is None:
                self._store = RecordStore(self.session_dir / RECORDS_FILE)
            self._store.append(record)
        self.records.append(record)

    # -- end of session -------------------------------------------------------------------------------------
    def finish(self, exitstatus: int | str = 0) -> SessionOutcome:
        """Write a run folder and archive per record, then the session summary. Safe to call with no records."""
        if self.outcome is not None:
            return self.outcome
        if self.is_worker:  # the controller writes this worker's records; only release what the worker holds
            self.outcome = SessionOutcome(None)
            self._release()
            return self.outcome
        from .report.archive import build_archive
        from .report.files import summary_row, write_run_folder, write_session_summary

        outcome = SessionOutcome(self._session_dir)
        rows = []
        for record in self.records:
            try:
                folder = write_run_folder(record, self.session_dir)
                archive = build_archive(folder)
                outcome.runs.append(WrittenRun(record, folder, archive))
            except OSError as err:  # one unwritable run must not cost the others their files
                folder, archive = None, None
                outcome.runs.append(WrittenRun(record, None, None, error=str(err)))
            rows.append(summary_row(record, folder, archive))
        if self.records:
            meta = {
                "session": self.session_id,
                "exit_status": str(exitstatus),
                "meter": self.meter_description() if self._meter or self._meter_error else self._recorded_meter(),
                "settings": {
                    "backend": self.settings.backend,
                    "meter": self.settings.meter,
                    "gpus": list(self.settings.gpus),
                },
            }
            outcome.summary_json, outcome.summary_csv = write_session_summary(self.session_dir, rows, meta)
            outcome.plot = self._write_plot()
        self._release()
        self.outcome = outcome
        return outcome

    def _write_plot(self) -> Path | None:
        """The session's picture against the leaderboard; a plot that cannot be drawn becomes a note."""
        from .report.plot import write_plot

        plot, note = write_plot(self.records, self.session_dir)
        if note:
            self.notes.append(note)
        return plot

    def _release(self) -> None:
        if self._backend_cache is not None:
            self._backend_cache.close()
        if self._meter is not None:
            self._meter.close()

    def _recorded_meter(self) -> str | None:
        """The meter as the records describe it, for an xdist controller that never created one itself."""
        info = self.records[0].meter if self.records else {}
        return f"{info['name']} ({info.get('kind')}) - {info.get('reason', '')}" if info.get("name") else None
