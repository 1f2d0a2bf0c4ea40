"""study.core.registry.Registry: registration, discovery by package, lookup errors."""

from __future__ import annotations

import sys

import pytest

from study.core.errors import StudyConfigError
from study.core.registry import Registry


def test_discovery_imports_each_plugin_module_once_and_skips_helpers(tmp_path, monkeypatch):
    pkg = tmp_path / "plugs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("from study.core.registry import Registry\nREG = Registry('plug', 'plugs')\n")
    (pkg / "alpha.py").write_text("from plugs.base import REG\nREG.add('alpha', 1)\n")
    (pkg / "beta.py").write_text("from plugs.base import REG\n@REG.register('beta')\ndef beta():\n    return 2\n")
    (pkg / "_helper.py").write_text("raise RuntimeError('a helper module is not a plug-in')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from plugs.base import REG

    assert REG.names() == ("alpha", "beta")
    assert REG.get("alpha") == 1 and REG.get("beta")() == 2
    assert "gamma" not in REG and len(REG) == 2
    for name in ("plugs", "plugs.base", "plugs.alpha", "plugs.beta"):
        sys.modules.pop(name, None)


def test_unknown_name_lists_the_choices_and_the_closest():
    reg = Registry("layer mapping")
    reg.add("skip", object())
    reg.add("last", object())
    with pytest.raises(StudyConfigError, match=r"Unknown layer mapping 'skp'. Allowed: last, skip. Did you mean 'skip'\?"):
        reg.get("skp")


def test_a_name_registered_twice_to_another_entry_is_refused():
    reg = Registry("executor")
    first = object()
    reg.add("serial", first)
    reg.add("serial", first)  # the same entry again (a module re-imported) is fine
    with pytest.raises(ValueError, match="executor 'serial' is registered twice"):
        reg.add("serial", object())
