"""The parameters of augmentation policies: one pydantic model per policy, built from these types.

Each type keeps the value as given (an int ``alpha: 1`` stays an int): resolved parameters enter
cell ids, so validation must not convert them. Booleans are refused where a number is expected.
Models validate through ``study.core.schema.validate_settings``, which turns the first error into
a one-line ``StudyConfigError`` (``augmentation_params.eda.alpha: must be in (0, 1], got 2.``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError


class PolicyParams(BaseModel):
    """Base of a policy's parameter model: no keys besides the declared fields; a model without
    fields is a policy without parameters. Fields are declared in the order the resolved
    parameters keep (cache headers and logged metadata show them in that order)."""

    model_config = ConfigDict(extra="forbid")


def _rule(accepts: Callable[[Any], bool], rule: str) -> BeforeValidator:
    """A validator refusing what ``accepts`` rejects with the message ``must be <rule>``."""

    def validate(value: Any) -> Any:
        if not accepts(value):
            raise PydanticCustomError("augmentation_parameter", f"must be {rule}")
        return value

    return BeforeValidator(validate)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: A count of at least one (``n_aug``: copies per example; ``top_k``: candidates).
PositiveInt = Annotated[int, _rule(lambda v: _is_int(v) and v >= 1, "an int >= 1")]
#: A fraction of the words of a text, in (0, 1] (EDA's ``alpha``, the mlm policy's ``p``).
Fraction = Annotated[int | float, _rule(lambda v: _is_number(v) and 0 < v <= 1, "in (0, 1]")]
#: A softmax temperature, > 0.
Temperature = Annotated[int | float, _rule(lambda v: _is_number(v) and v > 0, "> 0")]
#: A Hugging Face model name or a local directory written by ``save_pretrained``.
ModelName = Annotated[str, _rule(lambda v: isinstance(v, str) and bool(v.strip()),
                                 "a model name or directory")]
