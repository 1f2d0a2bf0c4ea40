"""Unit and golden tests for study.objectives: the named objectives (presets) on the composed
objective, the prediction-layer loss, the mse/kl intermediate losses and skip/last mappings.

Reference values come from independent plain-Python formulas (explicit loops over floats, no
torch losses) and, for each objective, a golden number pinned once from those formulas.
Inputs are built from sin() of an index, deterministic on every platform; float64 is used so
the comparisons can be tight.
"""

from __future__ import annotations

import math

import pytest
import torch

from study.core.errors import StudyConfigError
from study.objectives import (
    LAYER_MAPPINGS,
    PRESETS,
    Distillation,
    FeatureSource,
    KDInputs,
    ModelDims,
    prediction,
)
from study.objectives.losses.kl import distribution_kl
from study.objectives.presets import legacy_params


def attention_kl(teacher, student, mask):
    return distribution_kl(student, teacher, mask)


def layer_mapping(kind, student_layers, teacher_layers, include_embeddings=False):
    mapping = LAYER_MAPPINGS[kind](None, student_layers=student_layers, teacher_layers=teacher_layers,
                                   embeddings=include_embeddings)
    return [(m, n) for m, n, _ in mapping.pairs()]

B, C, T = 3, 4, 5
L_S, L_T = 2, 4
H = 6  # width of teacher, and of the student when widths match
H_S_NARROW = 4
A = 2
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


# ----------------------------------------------------------------------------- fixtures


def fixed(*shape: int, k: float, scale: float = 1.0) -> torch.Tensor:
    n = math.prod(shape)
    return (torch.sin(torch.arange(1, n + 1, dtype=torch.float64) * k) * scale).reshape(shape)


def attention_probs(k: float, heads: int = A, mask: torch.Tensor = MASK) -> torch.Tensor:
    """(B, heads, T, T) softmax rows with padded keys at exactly 0, as HF eager attention."""
    scores = fixed(B, heads, T, T, k=k, scale=2.0)
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(torch.float64).min)
    return scores.softmax(-1)


def make_inputs(h_s: int = H, heads_s: int = A, heads_t: int = A, regression: bool = False) -> KDInputs:
    if regression:
        student_logits, teacher_logits = fixed(B, 1, k=0.9), fixed(B, 1, k=1.7, scale=1.5)
        labels = fixed(B, k=2.3, scale=2.0)
    else:
        student_logits, teacher_logits = fixed(B, C, k=0.9), fixed(B, C, k=1.7, scale=2.0)
        labels = torch.tensor([2, 0, 3])
    return Inputs(
        student_logits=student_logits,
        labels=labels,
        teacher_logits=teacher_logits,
        student_hidden=tuple(fixed(B, T, h_s, k=0.31 + 0.1 * i) for i in range(L_S + 1)),
        teacher_hidden=tuple(fixed(B, T, H, k=0.53 + 0.1 * i, scale=1.2) for i in range(L_T + 1)),
        student_attentions=tuple(attention_probs(0.37 + 0.1 * i, heads_s) for i in range(L_S)),
        teacher_attentions=tuple(attention_probs(0.71 + 0.1 * i, heads_t) for i in range(L_T)),
    )


class Inputs:
    """Old-style tensors; ``objective(inputs)`` wraps them as KDInputs with FeatureSources."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def kd_inputs(self) -> KDInputs:
        def source(hidden, maps):
            return FeatureSource.precomputed(MASK, {"attention": maps}, hidden_states=hidden)

        return KDInputs(student_logits=self.student_logits, labels=self.labels, mask=MASK.bool(),
                        teacher_logits=self.teacher_logits,
                        student=source(self.student_hidden, self.student_attentions),
                        teacher=source(self.teacher_hidden, self.teacher_attentions))


class Built:
    """A Distillation called on ``Inputs``; ``projection`` is the hidden term's learned W."""

    def __init__(self, objective: Distillation):
        self.objective = objective

    def __call__(self, inputs):
        return self.objective(inputs.kd_inputs())

    def double(self):
        self.objective.double()
        return self

    def __getattr__(self, name):
        return getattr(self.objective, name)

    @property
    def projection(self):
        return self.objective.terms[0].loss.projection.linear


def build(name: str, params: dict | None = None, *, task_type: str = "classification", h_s: int = H,
          student_layers: int = L_S, teacher_layers: int = L_T):
    """A named objective with old-style ``objective_params`` (alpha weighs the gold term)."""
    slots = legacy_params(name, params or {})
    return Built(Distillation(slots["prediction"], slots["intermediate"], task_type=task_type,
                              student=ModelDims(student_layers, h_s, A), teacher=ModelDims(teacher_layers, H, A)))


def set_projection(objective) -> None:
    """Fix the projection's weights so the golden value does not depend on init."""
    objective.objective.double()
    with torch.no_grad():
        objective.projection.weight.copy_(fixed(H, H_S_NARROW, k=0.7, scale=0.5))
        objective.projection.bias.copy_(fixed(H, k=1.3, scale=0.1))


# ------------------------------------------------------- independent plain-Python formulas


def ref_log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - lse for x in row]


def ref_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    rows, ys = logits.tolist(), labels.tolist()
    return sum(-ref_log_softmax(r)[y] for r, y in zip(rows, ys)) / len(rows)


def ref_kd(student: torch.Tensor, teacher: torch.Tensor, temp: float) -> float:
    """T^2 * mean_b sum_c p_t log(p_t / p_s), probabilities at temperature T."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        log_ps = ref_log_softmax([x / temp for x in s_row])
        log_pt = ref_log_softmax([x / temp for x in t_row])
        total += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_pt, log_ps))
    return temp * temp * total / len(student)


def ref_mse(a: torch.Tensor, b: torch.Tensor) -> float:
    xs, ys = a.flatten().tolist(), b.flatten().tolist()
    return sum((x - y) ** 2 for x, y in zip(xs, ys)) / len(xs)


def ref_hidden(student, teacher, pairs, weight=None, bias=None) -> float:
    """Mean over pairs of the mean squared error over real tokens and teacher features."""
    mask = MASK.tolist()
    per_pair = []
    for m, n in pairs:
        hs, ht = student[m].tolist(), teacher[n].tolist()
        total, count = 0.0, 0
        for b in range(B):
            for t in range(T):
                if not mask[b][t]:
                    continue
                x = hs[b][t]
                if weight is not None:
                    w, bb = weight.tolist(), bias.tolist()
                    x = [sum(w[o][i] * x[i] for i in range(len(x))) + bb[o] for o in range(len(w))]
                for o in range(len(ht[b][t])):
                    total += (x[o] - ht[b][t][o]) ** 2
                    count += 1
        per_pair.append(total / count)
    return sum(per_pair) / len(per_pair)


def ref_attention(student, teacher, pairs) -> float:
    """Mean over pairs of KL(A_t || A_s) per real query row over real keys, mean over heads;
    head-averaged distributions when the head counts differ."""
    mask = MASK.tolist()
    per_pair = []
    for m, n in pairs:
        a_s, a_t = student[m - 1].tolist(), teacher[n - 1].tolist()
        if len(a_s[0]) != len(a_t[0]):
            avg = lambda a: [[[[sum(a[b][h][i][j] for h in range(len(a[b]))) / len(a[b]) for j in range(T)]
                               for i in range(T)]] for b in range(B)]
            a_s, a_t = avg(a_s), avg(a_t)
        heads = len(a_s[0])
        total, rows = 0.0, 0
        for b in range(B):
            for i in range(T):
                if not mask[b][i]:
                    continue
                rows += 1
                for h in range(heads):
                    for j in range(T):
                        p, q = a_t[b][h][i][j], a_s[b][h][i][j]
                        if mask[b][j] and p > 0:
                            total += p * math.log(p / q) / heads
        per_pair.append(total / rows)
    return sum(per_pair) / len(per_pair)


# --------------------------------------------------------------------------- logit KD


def test_equal_logits_give_zero_kd():
    inputs = make_inputs()
    inputs.teacher_logits = inputs.student_logits.clone()
    out = build("logit_kd", {"alpha": 0.0, "temperature": 3.0})(inputs)
    assert out["loss_kd"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-12)


def test_logit_kd_matches_hand_formula():
    inputs = make_inputs()
    for temp, alpha in [(1.0, 0.0), (2.0, 0.5), (4.0, 0.3)]:
        out = build("logit_kd", {"temperature": temp, "alpha": alpha})(inputs)
        kd = ref_kd(inputs.student_logits, inputs.teacher_logits, temp)
        ce = ref_ce(inputs.student_logits, inputs.labels)
        assert out["loss_kd"].item() == pytest.approx(kd, rel=1e-10)
        assert out["loss_ce"].item() == pytest.approx(ce, rel=1e-10)
        assert out["loss"].item() == pytest.approx(alpha * ce + (1 - alpha) * kd, rel=1e-10)


def test_kd_temperature_squared_scaling():
    # For logits d << T, KL(softmax(t/T) || softmax(s/T)) ~ Var_c(t - s) / (2 T^2) (second-order
    # expansion around the uniform distribution), so T^2 * KL is the same at T = 2 and T = 4
    # while the unscaled KL drops by 4.
    s, t = fixed(B, C, k=0.9, scale=1e-3), fixed(B, C, k=1.7, scale=1e-3)
    inputs = Inputs(student_logits=s, labels=torch.zeros(B, dtype=torch.long), teacher_logits=t,
                    student_hidden=None, teacher_hidden=None, student_attentions=(), teacher_attentions=())
    d = (t - s).tolist()
    half_var = sum(sum(x * x for x in r) / C - (sum(r) / C) ** 2 for r in d) / (2 * B)
    kd = {temp: build("logit_kd", {"temperature": temp, "alpha": 0.0})(inputs)["loss"].item() for temp in (2.0, 4.0)}
    assert kd[2.0] == pytest.approx(half_var, rel=1e-3)
    assert kd[4.0] == pytest.approx(half_var, rel=1e-3)
    assert (kd[2.0] / 4) / (kd[4.0] / 16) == pytest.approx(4.0, rel=1e-3)  # unscaled KL ratio


def test_alpha_one_is_plain_ce():
    inputs = make_inputs()
    ce = build("ce")(inputs)["loss"].item()
    assert ce == pytest.approx(ref_ce(inputs.student_logits, inputs.labels), rel=1e-12)
    for name in ("logit_kd", "logit_mse"):
        assert build(name, {"alpha": 1.0})(inputs)["loss"].item() == pytest.approx(ce, rel=1e-12)


def test_logit_mse_matches_hand_formula():
    inputs = make_inputs()
    out = build("logit_mse", {"alpha": 0.25})(inputs)
    mse = ref_mse(inputs.student_logits, inputs.teacher_logits)
    ce = ref_ce(inputs.student_logits, inputs.labels)
    assert out["loss_kd"].item() == pytest.approx(mse, rel=1e-12)
    assert out["loss"].item() == pytest.approx(0.25 * ce + 0.75 * mse, rel=1e-12)


# ----------------------------------------------------------------------- golden values

# Pinned once from the reference formulas above; a change means an objective's maths moved
# (bump its `version`).
GOLDEN = {
    "ce": 2.173867763905,
    "logit_kd": 1.672451266339,
    "logit_mse": 2.533777601577,
    "hidden_mse": 2.942453435502,
    "hidden_mse_projected": 2.957451307004,
    "attention_kl": 2.321597375651,
    "attention_kl_heads": 2.025867751219,
    "regression_logit_kd": 2.573066039574,
}


def reference_value(case: str) -> float:
    if case == "regression_logit_kd":
        inputs = make_inputs(regression=True)
        s, t, y = inputs.student_logits, inputs.teacher_logits, inputs.labels
        return 0.5 * ref_mse(s.squeeze(-1), y) + 0.5 * ref_mse(s, t)
    inputs = make_inputs()
    s, t, y = inputs.student_logits, inputs.teacher_logits, inputs.labels
    ce = ref_ce(s, y)
    kd = 0.5 * ce + 0.5 * ref_kd(s, t, 2.0)  # the default logit term of hidden_mse/attention_kl
    uniform = [(1, 2), (2, 4)]  # L_s = 2, L_t = 4
    if case == "ce":
        return ce
    if case == "logit_kd":
        return kd
    if case == "logit_mse":
        return 0.5 * ce + 0.5 * ref_mse(s, t)
    if case == "hidden_mse":
        return kd + ref_hidden(inputs.student_hidden, inputs.teacher_hidden, [(0, 0), *uniform])
    if case == "hidden_mse_projected":
        narrow = make_inputs(h_s=H_S_NARROW)
        w, b = fixed(H, H_S_NARROW, k=0.7, scale=0.5), fixed(H, k=1.3, scale=0.1)
        return kd + ref_hidden(narrow.student_hidden, narrow.teacher_hidden, [(0, 0), *uniform], w, b)
    if case == "attention_kl":
        return kd + ref_attention(inputs.student_attentions, inputs.teacher_attentions, uniform)
    if case == "attention_kl_heads":
        four = make_inputs(heads_t=4)
        return kd + ref_attention(four.student_attentions, four.teacher_attentions, uniform)
    raise KeyError(case)


def objective_value(case: str) -> float:
    if case == "hidden_mse_projected":
        objective = build("hidden_mse", h_s=H_S_NARROW)
        set_projection(objective)
        return objective(make_inputs(h_s=H_S_NARROW))["loss"].item()
    if case == "attention_kl_heads":
        return build("attention_kl")(make_inputs(heads_t=4))["loss"].item()
    if case.startswith("regression_"):
        return build(case.removeprefix("regression_"), task_type="regression")(make_inputs(regression=True))["loss"].item()
    return build(case)(make_inputs())["loss"].item()


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden(case):
    value = objective_value(case)
    assert value == pytest.approx(reference_value(case), rel=1e-10)
    assert value == pytest.approx(GOLDEN[case], rel=1e-9)


# ----------------------------------------------------------------- hidden-state transfer


def test_identical_hidden_states_give_zero_hidden_loss():
    inputs = make_inputs()
    inputs.student_hidden = (inputs.teacher_hidden[0], inputs.teacher_hidden[2], inputs.teacher_hidden[4])
    objective = build("hidden_mse", {"beta": 3.0})
    out = objective(inputs)
    assert out["loss_hidden_mse"].item() == pytest.approx(0.0, abs=1e-15)
    assert out["loss"].item() == pytest.approx(build("logit_kd")(inputs)["loss"].item(), rel=1e-12)
    assert list(objective.parameters()) == []


def test_different_widths_make_a_learned_projection():
    objective = build("hidden_mse", h_s=H_S_NARROW)
    shapes = sorted(tuple(p.shape) for p in objective.parameters())
    assert shapes == [(H,), (H, H_S_NARROW)]
    assert all(p.requires_grad for p in objective.parameters())


def test_beta_weighs_the_hidden_term():
    inputs = make_inputs()
    out0 = build("hidden_mse", {"beta": 0.0})(inputs)
    out2 = build("hidden_mse", {"beta": 2.0})(inputs)
    assert out2["loss"].item() == pytest.approx(out0["loss"].item() + 2.0 * out2["loss_hidden_mse"].item(), rel=1e-12)


def test_hidden_last_mapping_uses_last_layers_only():
    inputs = make_inputs()
    out = build("hidden_mse", {"layer_mapping": "last", "logit": "ce"})(inputs)
    expected = ref_hidden(inputs.student_hidden, inputs.teacher_hidden, [(L_S, L_T)])
    assert out["loss_hidden_mse"].item() == pytest.approx(expected, rel=1e-12)
    assert out["loss"].item() == pytest.approx(ref_ce(inputs.student_logits, inputs.labels) + expected, rel=1e-12)


def _garble_padding(states: tuple[torch.Tensor, ...], value: float) -> tuple[torch.Tensor, ...]:
    pad = ~MASK.bool()
    return tuple(torch.where(pad[:, :, None], torch.full_like(h, value), h) for h in states)


@pytest.mark.parametrize("value", [1e6, float("nan")])
def test_padding_does_not_change_hidden_loss(value):
    objective = build("hidden_mse", h_s=H_S_NARROW)
    set_projection(objective)
    clean = make_inputs(h_s=H_S_NARROW)
    garbled = make_inputs(h_s=H_S_NARROW)
    garbled.student_hidden = tuple(h.requires_grad_() for h in _garble_padding(garbled.student_hidden, value))
    garbled.teacher_hidden = _garble_padding(garbled.teacher_hidden, -value)
    loss = objective(garbled)["loss"]
    assert loss.item() == pytest.approx(objective(clean)["loss"].item(), rel=1e-12)
    loss.backward()
    assert all(torch.isfinite(h.grad).all() for h in garbled.student_hidden)


# --------------------------------------------------------------------- attention transfer


def test_identical_attentions_give_zero():
    inputs = make_inputs()
    inputs.student_attentions = (inputs.teacher_attentions[1], inputs.teacher_attentions[3])
    out = build("attention_kl")(inputs)
    assert out["loss_attention_kl"].item() == pytest.approx(0.0, abs=1e-15)


def test_attention_kl_of_known_2x2_distributions():
    teacher = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]], dtype=torch.float64)  # (1, 1, 2, 2)
    student = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]], dtype=torch.float64)
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row1 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert attention_kl(teacher, student, mask).item() == pytest.approx((row0 + row1) / 2, rel=1e-12)
    # a padded second token: only query row 0, and only key 0 (teacher mass 1 there)
    teacher_pad = torch.tensor([[[[1.0, 0.0], [0.3, 0.7]]]], dtype=torch.float64)
    pad = torch.tensor([[True, False]])
    assert attention_kl(teacher_pad, student, pad).item() == pytest.approx(math.log(1 / 0.25), rel=1e-12)


def test_attention_kl_zeros_are_finite():
    teacher = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]], dtype=torch.float64)
    student = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64, requires_grad=True)
    loss = attention_kl(teacher, student, torch.ones(1, 2, dtype=torch.bool))
    # row 0: 0 (0 log 0 = 0); row 1: 0.5 log(0.5 / 1) + 0.5 log(0.5 / eps), eps = 1e-12
    expected = (0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-12)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert torch.isfinite(student.grad).all()


def test_head_count_mismatch_compares_head_averages():
    # student heads differ from teacher heads but average to the same distribution -> 0
    base = attention_probs(0.4, heads=1)
    other = attention_probs(0.9, heads=1)
    shift = 0.5 * (other - base)
    teacher = torch.cat([base, base + shift, base - shift, base], dim=1)  # (B, 4, T, T)
    student = torch.cat([base + 0.5 * shift, base - 0.5 * shift], dim=1)  # (B, 2, T, T)
    assert attention_kl(teacher, student, MASK.bool()).item() == pytest.approx(0.0, abs=1e-14)
    inputs = make_inputs(heads_t=4)
    out = build("attention_kl", {"logit": "ce"})(inputs)
    expected = ref_attention(inputs.student_attentions, inputs.teacher_attentions, [(1, 2), (2, 4)])
    assert out["loss_attention_kl"].item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("value", [0.3, float("nan")])
def test_padding_does_not_change_attention_loss(value):
    objective = build("attention_kl")
    pad_query = ~MASK.bool()[:, None, :, None]  # (B, 1, T, 1)
    pad_key = ~MASK.bool()[:, None, None, :]  # (B, 1, 1, T)

    def garble(maps):
        return tuple(torch.where(pad_query | pad_key, torch.full_like(a, value), a) for a in maps)

    clean, garbled = make_inputs(), make_inputs()
    garbled.student_attentions = tuple(a.requires_grad_() for a in garble(garbled.student_attentions))
    garbled.teacher_attentions = garble(garbled.teacher_attentions)
    loss = objective(garbled)["loss"]
    assert loss.item() == pytest.approx(objective(clean)["loss"].item(), rel=1e-12)
    loss.backward()
    assert all(torch.isfinite(a.grad).all() for a in garbled.student_attentions)


# ------------------------------------------------------------------------ layer mapping


def test_skip_layer_mapping():
    assert layer_mapping("skip", 2, 6) == [(1, 3), (2, 6)]
    assert layer_mapping("skip", 3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert layer_mapping("skip", 4, 6) == [(1, 1), (2, 3), (3, 4), (4, 6)]  # floor of m*6/4
    assert layer_mapping("skip", 6, 6) == [(m, m) for m in range(1, 7)]
    assert layer_mapping("skip", 2, 6, include_embeddings=True) == [(0, 0), (1, 3), (2, 6)]


def test_last_layer_mapping():
    assert layer_mapping("last", 2, 6) == [(2, 6)]
    assert layer_mapping("last", 2, 6, include_embeddings=True) == [(2, 6)]


def test_bad_layer_mappings_raise():
    with pytest.raises(StudyConfigError, match="skpi.*Did you mean 'skip'"):
        Distillation({}, [{"mapping": "skpi"}], task_type="classification",
                     student=ModelDims(2, H, A), teacher=ModelDims(4, H, A))
    with pytest.raises(StudyConfigError, match="8 > 6"):
        layer_mapping("skip", 8, 6)
    with pytest.raises(StudyConfigError, match="8 > 6"):
        build("attention_kl", student_layers=8, teacher_layers=6)
    with pytest.raises(StudyConfigError, match="'skip'"):  # the old name is only legacy
        legacy_params("hidden_mse", {"layer_mapping": "skip"})


# ---------------------------------------------------------------------- config errors


def test_unknown_objective_mentions_name_and_suggestion():
    with pytest.raises(StudyConfigError, match="logit_kdd.*Did you mean 'logit_kd'"):
        legacy_params("logit_kdd", {})


def test_unknown_param_mentions_name_and_allowed():
    with pytest.raises(StudyConfigError, match="'temprature'.*Allowed: alpha, beta, layer_mapping, logit, temperature"):
        legacy_params("logit_kd", {"temprature": 3.0})
    with pytest.raises(StudyConfigError, match="'teacher_temp'.*Did you mean 'teacher_temperature'"):
        prediction.resolve({"teacher_temp": 3.0})
    with pytest.raises(StudyConfigError, match="'kd'"):
        legacy_params("attention_kl", {"logit": "kd"})
    with pytest.raises(StudyConfigError, match="'alpah'.*Allowed"):
        Distillation({}, [{"features": "hidden", "alpah": 1}], task_type="classification",
                     student=ModelDims(2, H, A), teacher=ModelDims(4, H, A))
    with pytest.raises(StudyConfigError, match="'kl' does not apply to feature 'hidden'"):
        Distillation({}, [{"features": "hidden", "loss": "kl"}], task_type="classification",
                     student=ModelDims(2, H, A), teacher=ModelDims(4, H, A))


@pytest.mark.parametrize("params", [{"alpha": 1.5}, {"alpha": "0.5"}, {"teacher_temperature": 0.0},
                                    {"alpha": True}, {"student_temperature": float("inf")}])
def test_out_of_range_values_raise(params):
    with pytest.raises(StudyConfigError, match=repr(next(iter(params.values()))).replace(".", "\\.")):
        prediction.resolve(params)


def test_prediction_slot_defaults_and_normalisation():
    assert prediction.resolve(None) == {"distance": "kl", "teacher_temperature": 2.0,
                                        "student_temperature": 2.0, "alpha": 0.5}
    assert isinstance(prediction.resolve({"alpha": 1})["alpha"], float)
    # alpha 0 never reads the teacher: one identity whatever the distance or temperatures
    assert prediction.resolve({"alpha": 0, "distance": "mse", "student_temperature": 4}) == \
        prediction.resolve({"alpha": 0.0}) == {"distance": "none", "alpha": 0.0}


def test_legacy_params_convert_alpha_to_the_teacher_weight():
    # the old alpha weighed the gold term; the slot's alpha weighs the teacher term
    assert legacy_params("logit_kd", {"alpha": 0.3})["prediction"]["alpha"] == pytest.approx(0.7)
    assert legacy_params("hidden_mse", {"beta": 2, "logit": "ce"}) == {
        "prediction": {"alpha": 0.0}, "intermediate": [{"features": "hidden", "loss": "mse", "mapping": "skip",
                                                        "weight": 2}]}


def test_composition_flags():
    dims = dict(task_type="classification", student=ModelDims(2, H, A), teacher=ModelDims(4, H, A))
    ce = Distillation({"alpha": 0}, [], **dims)
    assert not ce.needs_teacher and not ce.needs_hidden and ce.taps() == ({}, {})
    kd = Distillation({}, [], **dims)
    assert kd.needs_teacher and not kd.needs_teacher_forward
    att = Distillation({}, [{"features": "attention", "loss": "kl"}], **dims)
    assert att.needs_teacher_forward and not att.needs_hidden
    assert att.taps() == ({1: {"q", "k"}, 2: {"q", "k"}}, {2: {"q", "k"}, 4: {"q", "k"}})
    two = Distillation({}, [{"features": "hidden"}, {"features": "hidden", "mapping": "last"}], **dims)
    assert two.component_names == ["loss_hidden_mse_0", "loss_hidden_mse_1"]


def test_bad_task_type_and_missing_inputs_raise():
    with pytest.raises(StudyConfigError, match="'ranking'"):
        build("logit_kd", task_type="ranking")
    inputs = make_inputs()
    inputs.teacher_logits = None
    with pytest.raises(ValueError, match="teacher logits"):
        build("logit_kd")(inputs)
    kd = make_inputs().kd_inputs()
    kd.student.hidden_states = None
    with pytest.raises(ValueError, match="needs hidden states"):
        build("hidden_mse").objective(kd)


# --------------------------------------------------------------------------- regression


def test_regression_variants_are_mse():
    inputs = make_inputs(regression=True)
    s, t, y = inputs.student_logits, inputs.teacher_logits, inputs.labels
    mse_y, mse_t = ref_mse(s.squeeze(-1), y), ref_mse(s, t)
    ce = build("ce", task_type="regression")(inputs)
    assert set(ce) == {"loss", "loss_mse"}
    assert ce["loss"].item() == pytest.approx(mse_y, rel=1e-12)
    for temp in (1.0, 5.0):  # temperature has no effect on regression
        out = build("logit_kd", {"alpha": 0.3, "temperature": temp}, task_type="regression")(inputs)
        assert out["loss"].item() == pytest.approx(0.3 * mse_y + 0.7 * mse_t, rel=1e-12)
    out = build("logit_mse", {"alpha": 0.3}, task_type="regression")(inputs)
    assert out["loss"].item() == pytest.approx(0.3 * mse_y + 0.7 * mse_t, rel=1e-12)
    # intermediate terms are unchanged on regression
    hidden_cls = build("hidden_mse")(make_inputs())["loss_hidden_mse"].item()
    hidden_reg = build("hidden_mse", task_type="regression")(inputs)
    assert hidden_reg["loss_hidden_mse"].item() == pytest.approx(hidden_cls, rel=1e-12)
    assert hidden_reg["loss"].item() == pytest.approx(0.5 * mse_y + 0.5 * mse_t + hidden_cls, rel=1e-12)


# ---------------------------------------------------------------------------- gradients


# the fake inputs hold hidden states and attention maps, not the Q/K/V projections that
# attention scores and relations are computed from (those presets are covered by test_features.py)
# (and crd's memory bank reads example indices these inputs lack: tests/test_group.py trains it)
_MAP_PRESETS = sorted(n for n, p in PRESETS.items() if all(e["features"] in ("hidden", "cls", "attention")
                                                           and e.get("negatives") != "memory"
                                                           for e in p["intermediate"]))


@pytest.mark.parametrize("name", _MAP_PRESETS)
@pytest.mark.parametrize("task_type", ["classification", "regression"])
def test_gradients_reach_student_not_teacher(name, task_type):
    inputs = make_inputs(h_s=H_S_NARROW, regression=task_type == "regression")
    student = [inputs.student_logits, *inputs.student_hidden, *inputs.student_attentions]
    teacher = [inputs.teacher_logits, *inputs.teacher_hidden, *inputs.teacher_attentions]
    for x in student + teacher:
        x.requires_grad_()
    objective = build(name, task_type=task_type, h_s=H_S_NARROW).double()
    out = objective(inputs)
    assert out["loss"].dim() == 0
    assert all(not v.requires_grad for k, v in out.items() if k != "loss")
    out["loss"].backward()
    assert inputs.student_logits.grad is not None and inputs.student_logits.grad.abs().sum() > 0
    assert all(x.grad is None for x in teacher)
    if name == "hidden_mse":
        assert all(h.grad.abs().sum() > 0 for h in inputs.student_hidden)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.parameters())
    if name == "attention_kl":
        # the skip mapping reads student layers 1 and 2 (maps given for every layer)
        assert all(a.grad.abs().sum() > 0 for a in inputs.student_attentions)
