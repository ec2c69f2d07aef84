"""The plugin module is imported by every pytest run: it must not drag in ML stacks or NVML."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "diffusers", "numpy", "pynvml", "aiohttp", "datasets", "optimum_benchmark", "psutil")


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = f"import sys, pytest_aienergyscore.plugin\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_a_session_without_benchmarks_loads_no_meter_or_report_code(pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            pass

        def test_zz_after():
            loaded = [m for m in sys.modules if m.startswith("pytest_aienergyscore.")]
            print("LOADED=" + ",".join(sorted(loaded)))
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    line = next(x for x in result.outlines if "LOADED=" in x)
    loaded = set(line.split("LOADED=", 1)[1].split(","))
    assert loaded <= {
        "pytest_aienergyscore.plugin",
        "pytest_aienergyscore.config",
        "pytest_aienergyscore.config.options",
        "pytest_aienergyscore.config.option_spec",
        "pytest_aienergyscore.config.parsers",
        "pytest_aienergyscore.config.registry",
        "pytest_aienergyscore.config.settings",
        "pytest_aienergyscore.session",
        "pytest_aienergyscore.records",
        "pytest_aienergyscore.session.energy_session",
        "pytest_aienergyscore.meters",
        "pytest_aienergyscore.meters.base",
        "pytest_aienergyscore.records.confidence",
        "pytest_aienergyscore.records.figures",
        "pytest_aienergyscore.records.record",
        "pytest_aienergyscore.records.store",
    }
    assert not any(m.startswith(("pytest_aienergyscore.report", "pytest_aienergyscore.meters.nvml")) for m in loaded)
