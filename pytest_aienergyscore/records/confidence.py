"""The confidence rule: how far one metered window can be trusted, from its length in updates of its counter.

Why one place: a cumulative counter read at a window's edges may lag by up to one update at each edge, so a window
only a few updates long is mostly edge error. Meters grade every window by this rule, the NVML meter skips its
stalled-counter check on windows too short for a counter to be expected to move, and comparability refuses GPU
windows too short to trust; written once here, the three cannot drift apart. Standard library only.
"""

from __future__ import annotations

CONFIDENCE_OK = "ok"
CONFIDENCE_LOW = "low"
CONFIDENCE_UNTRUSTWORTHY = "untrustworthy"
# From most to least trusted: the confidence of a figure made of several windows is the worst of theirs.
CONFIDENCE_ORDER = (CONFIDENCE_OK, CONFIDENCE_LOW, CONFIDENCE_UNTRUSTWORTHY)

# A window shorter than this many counter updates is not trustworthy; shorter than the second, low confidence.
UNTRUSTWORTHY_UPDATES = 10
LOW_CONFIDENCE_UPDATES = 50


def too_short_to_trust(duration_s: float, period_s: float) -> bool:
    """True when a window spans fewer than :data:`UNTRUSTWORTHY_UPDATES` updates of a counter of ``period_s``."""
    return duration_s < UNTRUSTWORTHY_UPDATES * period_s


def window_confidence(duration_s: float, period_s: float, counter: str) -> tuple[str, str | None]:
    """(confidence, the warning that explains it or None) of a window metered by the counter named ``counter``.

    A short window is graded, never discarded: its energy is still what the counter says, only less certain.
    """
    if too_short_to_trust(duration_s, period_s):
        return CONFIDENCE_UNTRUSTWORTHY, (
            f"window of {duration_s:.3f} s is shorter than {UNTRUSTWORTHY_UPDATES} updates of the {counter} "
            f"counter ({period_s:g} s each): not trustworthy"
        )
    if duration_s < LOW_CONFIDENCE_UPDATES * period_s:
        return CONFIDENCE_LOW, (
            f"window of {duration_s:.2f} s spans fewer than {LOW_CONFIDENCE_UPDATES} updates of the {counter} "
            f"counter: low confidence"
        )
    return CONFIDENCE_OK, None


def least_confident(*levels: str) -> str:
    """The worst of several confidences: a figure derived from windows is no surer than its least sure window."""
    unknown = [level for level in levels if level not in CONFIDENCE_ORDER]
    if unknown:
        raise ValueError(f"unknown window confidence {unknown[0]!r}; allowed: {', '.join(CONFIDENCE_ORDER)}")
    return max(levels, key=CONFIDENCE_ORDER.index)
