"""Quality beside energy: the task metrics that score a benchmark's kept outputs after its metered phases.

The runner asks :func:`can_score` whether to keep outputs at all, then calls :func:`score_outputs` (the task's
built-in metric) or :func:`score_custom` (a test's own function). Importing this package costs no metric library:
each is imported by the function that uses it, when a benchmark is scored.
"""

from pytest_aienergyscore.quality.scoring import can_score, score_custom, score_outputs

__all__ = ["can_score", "score_custom", "score_outputs"]
