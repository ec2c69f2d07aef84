"""The optimum environment the tests run optimum-benchmark in: the machine's own, which ``aienergyscore setup
optimum`` makes (scripts/setup.sh runs it), or the one AIENERGYSCORE_OPTIMUM_PYTHON names. Resolved once, when
tests/conftest.py imports this module, before it points XDG_CACHE_HOME inside the repository; tests pass it on with
--optimum-python."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_aienergyscore.backends.optimum.environment import default_python

OPTIMUM_PYTHON = Path(os.environ.get("AIENERGYSCORE_OPTIMUM_PYTHON") or default_python())
MISSING = f"no optimum environment at {OPTIMUM_PYTHON}: run `aienergyscore setup optimum`"
