"""study.core.schema as components use it: settings models from defaults + checks, one-line refusals."""

from __future__ import annotations

from typing import Literal

import pytest

from study.core.errors import StudyConfigError
from study.core.schema import PositiveInt, UnitNumber, settings_model, validate_settings


def _legacy(where, key, value):
    if value not in ("a", "b"):
        raise StudyConfigError(f"{where}: {key} must be one of a, b, got {value!r}.")
    return value


MODEL = settings_model("ToySettings", {"alpha": 0.5, "size": 4, "mode": "a", "kind": "x", "free": None},
                       {"alpha": UnitNumber, "size": PositiveInt, "mode": _legacy, "kind": Literal["x", "y"]},
                       "toy 't'")


def test_defaults_are_validated_and_ints_become_floats_only_for_numbers():
    out = validate_settings(MODEL, {"alpha": 1, "free": [1, 2]}, "toy 't'")
    assert out == {"alpha": 1.0, "size": 4, "mode": "a", "kind": "x", "free": [1, 2]}
    assert isinstance(out["alpha"], float) and isinstance(out["size"], int)
    assert list(out) == ["alpha", "size", "mode", "kind", "free"]  # the declared order


@pytest.mark.parametrize("values, message", [
    ({"alpah": 1, "alpha": 2}, r"Unknown parameter 'alpah' in toy 't'\. Allowed: alpha, size, mode, kind, free\. "
                               r"Did you mean 'alpha'\?"),
    ({"alpha": True}, r"toy 't': alpha must be a number in \[0, 1\], got True\."),
    ({"alpha": "0.5"}, r"toy 't': alpha must be a number in \[0, 1\], got '0\.5'\."),
    ({"size": 2.0}, r"toy 't': size must be an integer >= 1, got 2\.0\."),
    ({"mode": "c"}, r"^toy 't': mode must be one of a, b, got 'c'\.$"),
    ({"kind": "z"}, r"toy 't'\.kind: Input should be 'x' or 'y', got 'z'\."),
])
def test_refusals_name_the_key_the_value_and_what_is_allowed(values, message):
    with pytest.raises(StudyConfigError, match=message):
        validate_settings(MODEL, values, "toy 't'", noun="parameter")


def test_a_component_without_parameters_says_so():
    empty = settings_model("Empty", {}, {}, "layer mapping 'x'")
    assert validate_settings(empty, {}, "layer mapping 'x'") == {}
    with pytest.raises(StudyConfigError, match=r"Unknown key 'p' in layer mapping 'x'\. Allowed: \(none\)\."):
        validate_settings(empty, {"p": 1}, "layer mapping 'x'")
