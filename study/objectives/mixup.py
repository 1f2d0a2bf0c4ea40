"""Mix-up distillation: the student learns the teacher's predictions on interpolated inputs.

MixKD (Liang et al. 2021, "MixKD: Towards Efficient Distillation of Large-scale Language
Models", ICLR 2021, eq. 3-5), the "mixup" factor of Distiller (He et al. 2021): for a batch with
word embeddings E (B, T, H) and a permutation pi of its rows, lambda ~ Beta(a, a) once per batch,

    E_mix = lambda * E + (1 - lambda) * E[pi]        (each model mixes its own embeddings)
    mask_mix = max(mask, mask[pi])                    (a position is real in either example)
    L_mixup = L_teacher(student(E_mix), teacher(E_mix))

with L_teacher the prediction slot's distance and temperatures (``kl`` at tau 1 when the slot
does not read the teacher), added as ``weight * L_mixup`` to the cell's loss. The teacher runs on
the mixed inputs every step (its cached logits are for the real examples only).

Slot: ``{"alpha": a, "weight": w}``; ``alpha = 0`` (the default) is no mix-up and resolves to
``{}`` so that cells without it keep one identity.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict

from study.core.schema import NonNegativeNumber, number, validate_settings


class MixupSettings(BaseModel):
    """The mix-up slot as written: ``alpha`` of Beta(alpha, alpha) (0 = off) and the term's weight."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
    alpha: number(lambda x: x >= 0.0, "a finite number >= 0 (0 = no mix-up)") = 0.0
    weight: NonNegativeNumber = 1.0


DEFAULTS: dict[str, Any] = MixupSettings().model_dump()
VERSION = "1"


def resolve(params: dict[str, Any] | None) -> dict[str, Any]:
    """The mix-up slot: ``{}`` when off (alpha 0), else ``{"alpha", "weight"}`` as floats.

    Raises:
        StudyConfigError: an unknown key (did-you-mean) or a value out of range.
    """
    out = validate_settings(MixupSettings, params or {}, "mixup", noun="parameter")
    return {} if out["alpha"] == 0.0 else out
