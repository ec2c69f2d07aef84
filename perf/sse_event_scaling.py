"""Does the vllm backend's stream parser stay linear on one huge event? Its time per byte, for growing events.

A hostile server can send one server-sent event of megabytes in small pieces. A parser that joins everything held so
far at every piece does quadratic work (doubling the event quadruples the time); ours holds the pieces and joins them
once, when the event ends. This feeds events of 0.5 to 4 MB (just under the 4 MB limit) in 1 KB pieces and reports
the time per megabyte; the largest event may cost at most 3 times the smallest per megabyte (quadratic work: 8 times).

    python perf/sse_event_scaling.py [--piece 1024]
"""

from __future__ import annotations

import argparse
import sys
import time

from pytest_aienergyscore.backends.vllm.stream import StreamReader

SIZES_MB = (0.5, 1.0, 2.0, 3.9)
MAX_RATIO = 3.0


def event(size: int) -> bytes:
    head, tail = b'data: {"choices":[{"index":0,"text":"', b'"}]}\n\n'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def seconds_per_mb(size_mb: float, piece: int) -> float:
    """The best of three: the time to feed one event of ``size_mb`` in ``piece``-byte pieces, per megabyte."""
    stream = event(int(size_mb * (1 << 20)))
    best = float("inf")
    for _ in range(3):
        reader = StreamReader()
        started = time.perf_counter()
        for i in range(0, len(stream), piece):
            reader.feed(stream[i : i + piece], 0.0)
        best = min(best, time.perf_counter() - started)
        assert reader.chunks == 1
    return best / size_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--piece", type=int, default=1024, help="bytes per piece (default 1024)")
    args = parser.parse_args()
    costs = {size: seconds_per_mb(size, args.piece) for size in SIZES_MB}
    for size, cost in costs.items():
        print(f"event of {size:g} MB in {args.piece}-byte pieces: {cost * 1e3:.2f} ms per MB")
    ratio = costs[SIZES_MB[-1]] / costs[SIZES_MB[0]]
    verdict = "OK" if ratio <= MAX_RATIO else "QUADRATIC"
    print(f"largest / smallest time per MB: {ratio:.2f} (limit {MAX_RATIO:g}): {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
