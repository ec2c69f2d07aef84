"""How evenly do fleet shards share a sweep's work: ours against pytest-split and pytest-shard.

A sweep's benchmarks differ in cost by orders of magnitude (a 7B model generating against a 135M one classifying),
so the question is the expected cost each share carries, not how many tests it gets. This prints, for each way of
splitting, the expected cost of every share (parameters x task passes per query, from the protocol table: the cost
our shards balance before any run), max/min over the shares, and max over the best any split can reach (the larger
of a fair share and the heaviest single benchmark, which no split can cut).

The two libraries are imported from wherever they are installed (or ``--libs DIR``, e.g. a
``pip install --target DIR pytest-split pytest-shard``, kept out of the project's environment so their plugins do
not load in every pytest run there); their own splitting functions are called on the same test ids.

    python perf/shard_balance.py [--shards 4] [--libs DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pytest_aienergyscore.session.shards import Benchmark, balanced_shares, expected_costs, fill_unknown

SWEEPS = {
    "3 models x 4 tasks (12)": {"SmolLM-135M": 135e6, "Llama-3.2-1B": 1.24e9, "Mistral-7B": 7.24e9},
    "5 models x 4 tasks (20)": {"135M": 135e6, "360M": 362e6, "1.7B": 1.71e9, "3B": 3.21e9, "8B": 8.03e9},
}
TASKS = ("text_generation", "summarization", "question_answering", "text_classification")


@dataclass(frozen=True)
class Item:
    """What the libraries read of a pytest item: its id."""

    nodeid: str


def sweep(models: dict[str, float]) -> tuple[list[Benchmark], dict[str, float]]:
    """The sweep's benchmarks (collection order: model by model) and their expected costs."""
    benchmarks = [Benchmark(f"test_sweep.py::test_{t}[{m}]", m, t) for m in models for t in TASKS]
    costs = fill_unknown(expected_costs(benchmarks, parameters=lambda m: int(models[m])))
    return benchmarks, costs


def ours(ids: list[str], costs: dict[str, float], shards: int) -> list[list[str]]:
    return balanced_shares({nodeid: costs[nodeid] for nodeid in ids}, shards)


def split_algorithm(name: str, with_costs: bool) -> Callable[[list[str], dict[str, float], int], list[list[str]]]:
    """pytest-split's algorithm ``name``; with no durations file (a first run) or with our costs written as one."""

    def run(ids: list[str], costs: dict[str, float], shards: int) -> list[list[str]]:
        from pytest_split.algorithms import Algorithms

        groups = Algorithms[name].value(shards, [Item(i) for i in ids], costs if with_costs else {})
        return [[item.nodeid for item in group.selected] for group in groups]

    return run


def shard_hash(ids: list[str], costs: dict[str, float], shards: int) -> list[list[str]]:
    """pytest-shard: sha256 of the test id modulo the shard count."""
    from pytest_shard.pytest_shard import filter_items_by_shard

    return [[item.nodeid for item in filter_items_by_shard([Item(i) for i in ids], s, shards)] for s in range(shards)]


SPLITTERS: dict[str, Callable[[list[str], dict[str, float], int], list[list[str]]]] = {
    "pytest-aienergyscore (params x task work)": ours,
    "pytest-split least_duration, no durations": split_algorithm("least_duration", False),
    "pytest-split duration_based_chunks, no durations": split_algorithm("duration_based_chunks", False),
    "pytest-split least_duration, our costs as durations": split_algorithm("least_duration", True),
    "pytest-shard (hash of test id)": shard_hash,
}


def row(name: str, shares: list[list[str]], costs: dict[str, float]) -> str:
    loads = [sum(costs[n] for n in share) for share in shares]
    best = max(sum(costs.values()) / len(shares), max(costs.values()))
    ratio = f"{max(loads) / min(loads):8.2f}" if min(loads) > 0 else "   empty"
    shown = " ".join(f"{load / 1e9:7.1f}" for load in loads)
    return f"{name:<52} {shown}   {ratio}   {max(loads) / best:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--libs", help="folder holding pytest_split and pytest_shard (pip install --target)")
    args = parser.parse_args()
    if args.libs:
        sys.path.insert(0, args.libs)
    for title, models in SWEEPS.items():
        benchmarks, costs = sweep(models)
        ids = [b.nodeid for b in benchmarks]
        print(f"\n{title}, {args.shards} shards; cost per share in G parameter-passes per query")
        print(f"{'splitter':<52} {'shares':<{8 * args.shards}}  max/min  max/best")
        for name, splitter in SPLITTERS.items():
            try:
                print(row(name, splitter(ids, costs, args.shards), costs))
            except ImportError as err:
                print(f"{name:<52} not installed ({err.name})")
        median, heaviest = statistics.median(costs.values()) / 1e9, max(costs.values()) / 1e9
        print(f"median benchmark {median:.2f} G, heaviest {heaviest:.1f} G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
