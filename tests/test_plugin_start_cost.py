"""The plugin module shows pytest only its hooks and fixtures (its own ``__dir__``), which keeps every pytest run's
start-up from paying a fixture check per helper, and pytest still finds every hook and fixture it defines."""

from __future__ import annotations

import pytest

from pytest_aienergyscore import plugin


def _defined_hooks() -> set[str]:
    return {name for name, value in vars(plugin).items() if name.startswith("pytest_") and callable(value)}


def test_dir_of_the_plugin_lists_only_its_hooks_and_fixtures() -> None:
    assert sorted(dir(plugin)) == sorted(_defined_hooks() | {"energy_meter", "energy_star"})


def test_the_helpers_hidden_from_dir_are_still_importable() -> None:
    from pytest_aienergyscore.plugin import SETTINGS_KEY, settings_of

    assert callable(settings_of) and isinstance(SETTINGS_KEY, pytest.StashKey)


SHOW_HOOKS = """
def test_show(request):
    manager = request.config.pluginmanager
    hooks = sorted(caller.name for caller in manager.get_hookcallers(manager.get_plugin("aienergyscore")))
    print("HOOKS=" + ",".join(hooks))
"""


def test_pytest_registers_every_hook_and_fixture_the_plugin_module_defines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_show=SHOW_HOOKS)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    hooks = next(x for x in result.outlines if "HOOKS=" in x).split("HOOKS=", 1)[1].split(",")
    assert set(hooks) == _defined_hooks()
    fixtures = pytester.runpytest("-p", "no:cacheprovider", "--fixtures")
    fixtures.stdout.fnmatch_lines(
        ["*fixtures defined from pytest_aienergyscore.plugin*", "energy_meter*", "energy_star*"]
    )
