"""Layer mapping: which teacher layer each student layer is distilled from.

A mapping is a list of ``(student_layer, teacher_layer)`` pairs. Transformer layers are
1-indexed; index 0 is the embedding layer, which only hidden-state transfer uses (HF
``output_hidden_states`` has ``L + 1`` entries, embeddings first; ``output_attentions`` has
``L`` entries, so attention layer ``m`` is ``attentions[m - 1]``).
"""

from __future__ import annotations

from collections.abc import Callable

from study.registry import StudyConfigError, lookup

Mapping = list[tuple[int, int]]


def _uniform(student_layers: int, teacher_layers: int) -> Mapping:
    """TinyBERT's uniform strategy (Jiao et al. 2020, sec. 3.1): ``g(m) = m * L_t / L_s``.

    When ``L_t`` is not a multiple of ``L_s`` the ratio is rounded down (``m * L_t // L_s``),
    so the last student layer still maps to the last teacher layer and no teacher layer is
    used twice.
    """
    return [(m, m * teacher_layers // student_layers) for m in range(1, student_layers + 1)]


def _last(student_layers: int, teacher_layers: int) -> Mapping:
    """Only the last layer of each (MiniLM, Wang et al. 2020, sec. 3.1)."""
    return [(student_layers, teacher_layers)]


# kind -> (mapping function, whether the embedding pair (0, 0) joins it for hidden states).
# ``last`` distils the final layer only, so it never includes the embeddings.
LAYER_MAPPINGS: dict[str, tuple[Callable[[int, int], Mapping], bool]] = {
    "uniform": (_uniform, True),
    "last": (_last, False),
}


def layer_mapping(
    kind: str, student_layers: int, teacher_layers: int, *, include_embeddings: bool = False
) -> Mapping:
    """Return the ``(student_layer, teacher_layer)`` pairs of mapping ``kind``.

    Args:
        kind: a key of ``LAYER_MAPPINGS`` (``uniform``, ``last``).
        student_layers: L_s, number of student transformer layers.
        teacher_layers: L_t, number of teacher transformer layers.
        include_embeddings: prepend the embedding pair ``(0, 0)`` (TinyBERT's embedding-layer
            loss) for the kinds that map every layer (``uniform``); ``last`` ignores it.

    Examples: ``uniform`` with L_s=2, L_t=6 gives ``[(1, 3), (2, 6)]``; with L_s=3, L_t=6,
    ``[(1, 2), (2, 4), (3, 6)]``; ``last`` gives ``[(L_s, L_t)]``.

    Raises:
        StudyConfigError: unknown ``kind`` (with did-you-mean), a layer count below 1, or a
            student deeper than its teacher (L_s > L_t).
    """
    fn, maps_embeddings = lookup(LAYER_MAPPINGS, kind, "layer mapping")
    for what, n in (("student_layers", student_layers), ("teacher_layers", teacher_layers)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise StudyConfigError(f"Layer mapping {kind!r}: {what} must be an integer >= 1, got {n!r}.")
    if student_layers > teacher_layers:
        raise StudyConfigError(
            f"Layer mapping {kind!r} needs student_layers <= teacher_layers, got "
            f"student_layers={student_layers} > teacher_layers={teacher_layers}."
        )
    pairs = fn(student_layers, teacher_layers)
    if include_embeddings and maps_embeddings:
        pairs = [(0, 0), *pairs]
    return pairs
