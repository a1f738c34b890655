"""Pretraining scaling laws: 6ND, Chinchilla loss, compute-optimal sizes,
the Llama-like shape rule and `gpusim scaling-law`."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from sim.cli import main
from workloads.errors import InputError
from workloads.models import load_models
from workloads import scaling_laws as sl

budgets = st.floats(min_value=1e19, max_value=1e27, allow_nan=False, allow_infinity=False)


def test_six_n_d():
    assert sl.training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)


def test_chinchilla_headline_run():
    # Chinchilla itself: 70B params on 1.4T tokens at ~5.76e23 FLOPs
    n, d = sl.compute_optimal(5.76e23)
    assert n == pytest.approx(69.3e9, rel=0.01)
    assert d == pytest.approx(1.386e12, rel=0.01)


@given(budgets)
@settings(max_examples=40, deadline=None)
def test_rule_spends_the_budget_at_20_tokens_per_param(c):
    n, d = sl.compute_optimal(c, "chinchilla")
    assert d / n == pytest.approx(20.0)
    assert 6 * n * d == pytest.approx(c, rel=1e-9)


@pytest.mark.parametrize("fit", ["chinchilla", "epoch"])
@given(c=budgets)
@settings(max_examples=25, deadline=None)
def test_fit_optimum_minimises_loss_on_the_budget(fit, c):
    n, d = sl.compute_optimal(c, "fit", fit)
    assert 6 * n * d == pytest.approx(c, rel=1e-9)
    best = sl.loss(n, d, fit)
    for f in (0.8, 0.95, 1.05, 1.25):
        assert sl.loss(n * f, c / (6 * n * f), fit) > best


def test_epoch_refit_is_near_20_tokens_per_param():
    # Besiroglu et al. 2024: their refit agrees with Chinchilla's ~20 tokens/param
    n, d = sl.compute_optimal(1e24, "fit", "epoch")
    assert 15 < d / n < 25
    # the Hoffmann Approach-3 constants put much more weight on data
    n2, d2 = sl.compute_optimal(1e24, "fit", "chinchilla")
    assert d2 / n2 > 50


def test_loss_constants_and_monotonicity():
    f = sl.FITS["chinchilla"]
    assert sl.loss(70e9, 1.4e12) == pytest.approx(1.69 + 406.4 / 70e9 ** 0.34 + 410.7 / 1.4e12 ** 0.28)
    assert sl.loss(1e9, 1e11) > sl.loss(1e10, 1e11) > sl.loss(1e10, 1e12) > f.E
    assert sl.loss(1e15, 1e18) == pytest.approx(f.E, abs=0.01)


@pytest.mark.parametrize("rule,fit", [("chinchilla", "chinchilla"), ("fit", "chinchilla"), ("fit", "epoch")])
def test_inverse_sizes_round_trip(rule, fit):
    n, d = sl.compute_optimal(3e24, rule, fit)
    assert sl.optimal_tokens(n, rule, fit) == pytest.approx(d, rel=1e-9)
    assert sl.optimal_params(d, rule, fit) == pytest.approx(n, rel=1e-9)
    out = sl.solve(params=n, rule=rule, fit=fit)
    assert out["compute"] == pytest.approx(3e24, rel=1e-9)


def test_larger_budget_follows_compute_optimal_sizes():
    n1, d1 = sl.compute_optimal(1e24)
    n2, d2 = sl.compute_optimal(1e26)
    assert n2 / n1 == pytest.approx(10.0) and d2 / d1 == pytest.approx(10.0)
    f = sl.FITS["epoch"]
    m1, e1 = sl.compute_optimal(1e24, "fit", "epoch")
    m2, e2 = sl.compute_optimal(1e26, "fit", "epoch")
    a = f.beta / (f.alpha + f.beta)
    assert m2 / m1 == pytest.approx(100 ** a) and e2 / e1 == pytest.approx(100 ** (1 - a))


def test_solve_combinations():
    assert sl.solve(params=7e9, tokens=2e12)["compute"] == pytest.approx(8.4e22)
    assert sl.solve(compute=8.4e22, params=7e9)["tokens"] == pytest.approx(2e12)
    assert sl.solve(compute=8.4e22, tokens=2e12)["params"] == pytest.approx(7e9)
    with pytest.raises(InputError):
        sl.solve(compute=1e24, params=1e9, tokens=1e12)
    with pytest.raises(InputError):
        sl.solve()
    with pytest.raises(InputError):
        sl.solve(compute=-1.0)
    with pytest.raises(InputError, match="loss fit"):
        sl.solve(compute=1e24, fit="kaplan")


@given(st.floats(min_value=5e7, max_value=2e12))
@settings(max_examples=30, deadline=None)
def test_shape_rule_lands_near_target(n):
    m = sl.model_for_params(n)
    assert m.params_total == pytest.approx(n, rel=0.08)
    assert m.hidden % sl.HEAD_DIM == 0 and m.heads % m.kv == 0
    if n >= 1e9:
        assert m.kv == sl.KV_HEADS
        assert sl.ASPECT_BAND[0] <= m.hidden / m.layers <= sl.ASPECT_BAND[1]


def test_shape_rule_recovers_llama3_70b_shape():
    m = sl.model_for_params(70.55e9)
    ref = load_models().get("llama3-70b")
    assert m.hidden == ref.hidden and abs(m.layers - ref.layers) <= 2 and m.ffn == ref.ffn


def test_shape_rule_rejects_silly_sizes():
    with pytest.raises(InputError):
        sl.model_for_params(1e3)
    with pytest.raises(InputError):
        sl.model_for_params(float("nan"))


def test_full_count_adds_attention():
    m = load_models().get("llama3-70b")
    d = 1e12
    base = 6 * m.params_matmul_active * d
    assert sl.training_flops_full(m, d, 2) == pytest.approx(base, rel=1e-3)
    long = sl.training_flops_full(m, d, 8192)
    # 3 passes x 2 FLOPs per MAC x layers x heads x (qk + v dims) x 4096 keys on average
    extra = 3 * 2 * m.layers * m.heads * (m.hd + m.hd) * 4096 * d
    assert long - sl.training_flops_full(m, d, 0) == pytest.approx(extra, rel=1e-9)
    assert 1.0 < long / sl.training_flops(m.params_total, d) < 1.1


def test_published_pretraining_flops():
    models = load_models()
    c = sl.published_pretraining_flops(models.get("llama3-405b"))
    assert c == pytest.approx(3.8e25, rel=0.1)  # Llama 3 paper: 3.8e25 FLOPs
    assert sl.published_pretraining_flops(models.get("mixtral-8x7b")) is None


# ------------------------------------------------------------------ CLI
def test_cli_json_compute(capsys):
    assert main(["scaling-law", "--compute", "1e24", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("params", "tokens", "compute", "loss"):
        assert key in out
    assert out["compute"] == pytest.approx(1e24)
    assert out["tokens"] / out["params"] == pytest.approx(20)
    assert out["model"]["params_total"] == pytest.approx(out["params"], rel=0.08)


def test_cli_fit_rule_and_model(capsys):
    assert main(["scaling-law", "--model", "llama3-8b", "--rule", "fit", "--fit", "epoch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == pytest.approx(load_models().get("llama3-8b").params_total)
    assert out["loss"] == pytest.approx(sl.loss(out["params"], out["tokens"], "epoch"))
    assert out["fit"] == "epoch" and out["rule"] == "fit"


def test_cli_human_output(capsys):
    assert main(["scaling-law", "--params", "7B", "--tokens", "2T"]) == 0
    text = capsys.readouterr().out
    assert "8.4e+22" in text and "loss" in text


@pytest.mark.parametrize("argv", [["--params", "lots"], [], ["--model", "llama9"], ["--compute", "-5"],
                                  ["--model", "llama3-8b", "--params", "8B"], ["--compute", "1e24", "--fit", "x"]])
def test_cli_bad_input_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) if "--fit" in argv else _nothing():
        rc = main(["scaling-law", *argv])
        assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
