"""A fleet sweep's results tree written by hand: shard folders with their records and shard.json, as the shards of
``--energy-shard`` leave them, for the merge's tests (no cluster, no GPU: the records say which GPU they ran on)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pytest_aienergyscore.records.figures import DeviceEnergy, Measurement
from pytest_aienergyscore.records.record import Phase, Record
from pytest_aienergyscore.records.store import RECORDS_FILE, RecordStore

H100 = "NVIDIA H100 80GB HBM3"


def gpu_record(
    nodeid: str,
    model: str,
    wh_per_1k: float,
    task: str = "text_classification",
    model_class: str | None = "A",
    gpu: str = H100,
    started_at: float = 1_764_000_000.0,
) -> Record:
    """A record of 1,000 queries metered on one GPU by NVML, whose figure is ``wh_per_1k`` Wh per 1,000 queries."""
    measurement = Measurement(
        "forward", "nvml", "measured", 60.0, (DeviceEnergy("gpu:0", "gpu", wh_per_1k * 3600, "measured", "nvml"),)
    )
    return Record(
        nodeid,
        "pytorch",
        model=model,
        task=task,
        model_class=model_class,
        queries=1000,
        phases=[Phase("forward", measurement, 1000)],
        meter={"name": "nvml", "kind": "measured", "reason": "a GPU is visible", "devices": []},
        environment={"gpus": [{"device": "gpu:0", "name": gpu, "scope": "gpu"}]},
        started_at=started_at,
        finished_at=started_at + 60.0,
    )


def write_shard(
    run: Path,
    index: int,
    count: int,
    host: str,
    records: Sequence[Record],
    finished: bool = True,
    assigned: Sequence[str] | None = None,
) -> Path:
    """``run``/shard-INDEX-of-COUNT/ with ``records`` (as run on ``host``) and its shard.json; ``assigned``
    defaults to the records' test ids (a shard that measured all it was given)."""
    folder = run / f"shard-{index}-of-{count}"
    store = RecordStore(folder / RECORDS_FILE)
    for record in records:
        record.environment["hostname"] = host
        store.append(record)
    folder.mkdir(parents=True, exist_ok=True)
    shard = {
        "run_id": run.name,
        "index": index,
        "count": count,
        "host": host,
        "assigned": list(assigned if assigned is not None else [r.nodeid for r in records]),
        "expected_cost": float(len(records)),
        "started_at": "2026-12-01T10:00:00+00:00",
        "finished": finished,
        "finished_at": "2026-12-01T11:00:00+00:00" if finished else None,
        "exitstatus": 0 if finished else None,
    }
    (folder / "shard.json").write_text(json.dumps(shard), encoding="utf-8")
    return folder
