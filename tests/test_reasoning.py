"""Reasoning workloads: token lengths, thinking dropped between turns,
test-time compute accounting, and the pass@k quality model."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from workloads.models import load_models
from workloads.errors import InputError
from workloads.reasoning import (Difficulty, TestTimeCompute, TokenLength, compute_multiplier,
                                 conversation_turns, empirical, fit_difficulty, fixed, from_trace,
                                 generated_tokens_per_request, lognormal, output_from_spec, parallel_sequences,
                                 request_flops, request_work, verifier_work)

from pathlib import Path

AZURE = Path(__file__).resolve().parents[1] / "sim" / "data" / "traces" / "azure_conv_sample.csv"


# ---------------------------------------------------------------- lengths
def test_fixed_and_lognormal_lengths():
    rng = np.random.default_rng(1)
    assert list(fixed(300).sample(rng, 3)) == [300, 300, 300]
    draws = lognormal(2000, 0.8).sample(rng, 200_000)
    assert draws.mean() == pytest.approx(2000, rel=0.02)          # the mean, not the median, is 2000
    assert np.median(draws) == pytest.approx(2000 * math.exp(-0.32), rel=0.03)
    assert lognormal(2000).expected == 2000


def test_same_seed_same_draws():
    a = lognormal(500).sample(np.random.default_rng(7), 50)
    b = lognormal(500).sample(np.random.default_rng(7), 50)
    assert (a == b).all()


def test_empirical_lengths_resample_a_trace_column():
    d = from_trace(AZURE, "output")
    assert d.distribution == "empirical" and len(d.values) == 2000
    draws = d.sample(np.random.default_rng(0), 1000)
    assert set(draws) <= set(d.values)
    assert from_trace(AZURE, "input").expected > d.expected       # conversation prompts are longer than answers
    with pytest.raises(InputError):
        from_trace(AZURE, "latency")


def test_bad_lengths_are_input_errors():
    with pytest.raises(InputError, match="did you mean"):
        TokenLength("lognormall", 10)
    with pytest.raises(InputError):
        TokenLength("lognormal", 10, sigma=0)
    with pytest.raises(InputError):
        empirical([])
    with pytest.raises(InputError):
        fixed(-1)


def test_thinking_plus_answer_split():
    out = output_from_spec({"thinking": 4000, "answer": 500})
    assert out.expected == 4500
    assert out.thinking_fraction == pytest.approx(4000 / 4500)
    think, ans = out.sample(np.random.default_rng(0), 4)
    assert list(think) == [4000] * 4 and list(ans) == [500] * 4
    lg = output_from_spec({"thinking": 4000, "answer": 500, "distribution": "lognormal", "sigma": 0.5})
    t, a = lg.sample(np.random.default_rng(0), 100_000)
    assert t.mean() == pytest.approx(4000, rel=0.02) and a.mean() == pytest.approx(500, rel=0.02)
    assert output_from_spec(300).expected == 300
    assert output_from_spec({"mean": 800, "distribution": "lognormal"}).thinking is None
    with pytest.raises(InputError):
        output_from_spec({"distribution": "empirical"})


# ---------------------------------------------------------------- conversations
def test_thinking_is_dropped_between_turns():
    turns = conversation_turns([100, 50, 80], [1000, 800, 900], [200, 150, 100], system_tokens=20)
    assert [t.prompt_tokens for t in turns] == [120, 120 + 200 + 50, 370 + 150 + 80]
    assert [t.cached_tokens for t in turns] == [0, 120, 370]
    assert [t.output_tokens for t in turns] == [1200, 950, 1000]
    assert turns[1].new_tokens == 200 + 50      # the answer after the removed thinking is prefilled again


def test_keeping_thinking_grows_the_context():
    kept = conversation_turns([100, 50], [1000, 800], [200, 150], keep_thinking=True)
    dropped = conversation_turns([100, 50], [1000, 800], [200, 150])
    assert kept[1].prompt_tokens - dropped[1].prompt_tokens == 1000
    assert kept[1].new_tokens == 50
    with pytest.raises(InputError):
        conversation_turns([1, 2], [1], [1, 2])


# ---------------------------------------------------------------- test-time compute
def test_single_pass_work():
    w = request_work(1000, 500)
    assert (w.prompt_tokens, w.sequences, w.generated_tokens, w.kv_tokens_peak, w.verifier_tokens) == \
        (1000, 1, 500, 1500, 0)
    assert compute_multiplier(1000, 500, TestTimeCompute()) == 1.0


def test_samples_share_the_prompt():
    w = request_work(1000, 500, TestTimeCompute(samples=8))
    assert w.sequences == 8 and w.generated_tokens == 4000
    assert w.kv_tokens_peak == 1000 + 8 * 500          # the prompt's KV once, not eight times
    assert w.answer_tokens == 500
    assert compute_multiplier(1000, 500, TestTimeCompute(samples=8)) == pytest.approx((1000 + 4000) / 1500)


def test_search_and_verifier():
    ttc = TestTimeCompute(samples=4, branching=3, depth=5, verifier_passes=1)
    w = request_work(200, 1000, ttc)
    assert w.sequences == 12 and w.generated_tokens == 12_000
    # the verifier reads prompt + the candidate so far after each of 5 steps
    assert w.verifier_tokens == pytest.approx(12 * sum(200 + 1000 * s / 5 for s in range(1, 6)))
    assert compute_multiplier(200, 1000, ttc) > 12


def test_search_depth_is_steps_not_copies():
    # one accounting for every mode: samples x branching sequences share the
    # prompt, and each generates the answer once over the depth steps
    search = {"branching": 3, "depth": 4}
    assert parallel_sequences() == 1 and parallel_sequences(4) == 4
    assert parallel_sequences(2, search) == 6
    assert generated_tokens_per_request(1000, 2, search) == 6000
    assert generated_tokens_per_request(1000, 2, {"branching": 3, "depth": 1}) == 6000
    ttc = TestTimeCompute(samples=2, branching=3, depth=4)
    assert parallel_sequences(ttc.samples, ttc) == ttc.candidates == 6
    # the scenario's search block reads the same way
    from sim.scenario import SearchSpec
    assert parallel_sequences(2, SearchSpec(branching=3, depth=4)) == 6
    assert verifier_work(100, 1000, 2, search, 0) == (0, 0.0)
    with pytest.raises(InputError):
        parallel_sequences(0)
    with pytest.raises(InputError):
        parallel_sequences(1, {"branching": 0, "depth": 2})
    with pytest.raises(InputError):
        generated_tokens_per_request(-1, 1)


@settings(max_examples=50, deadline=None)
@given(i=st.integers(0, 10_000), o=st.integers(0, 10_000), n=st.integers(1, 16), b=st.integers(1, 4),
       d=st.integers(1, 6), v=st.integers(0, 3))
def test_shared_functions_agree_with_request_work(i, o, n, b, d, v):
    ttc = TestTimeCompute(n, b, d, v)
    w = request_work(i, o, ttc)
    assert w.sequences == parallel_sequences(n, ttc)
    assert w.generated_tokens == generated_tokens_per_request(o, n, {"branching": b, "depth": d})
    passes, tokens = verifier_work(i, o, n, ttc, v)
    assert passes == v * n * b * d
    assert passes * tokens == pytest.approx(w.verifier_tokens)


@settings(max_examples=50, deadline=None)
@given(i=st.integers(0, 10_000), o=st.integers(1, 10_000), n=st.integers(1, 16), b=st.integers(1, 4),
       d=st.integers(1, 6), v=st.integers(0, 3))
def test_more_test_time_compute_never_costs_less(i, o, n, b, d, v):
    base = compute_multiplier(i, o, TestTimeCompute(n, b, d, v))
    assert base >= 1.0
    assert compute_multiplier(i, o, TestTimeCompute(n + 1, b, d, v)) > base
    assert compute_multiplier(i, o, TestTimeCompute(n, b, d, v + 1)) >= base


def test_request_flops_match_the_model():
    m = load_models().get("llama3-8b")
    w = request_work(1000, 500, TestTimeCompute(samples=2))
    f = request_flops(m, w)
    expect = 1000 * m.forward_flops_per_token(500) + 1000 * m.forward_flops_per_token(1000 + 250)
    assert f == pytest.approx(expect)


def test_bad_test_time_settings():
    for kw in ({"samples": 0}, {"branching": 0}, {"depth": 1.5}, {"verifier_passes": -1}):
        with pytest.raises(InputError):
            TestTimeCompute(**kw)


# ---------------------------------------------------------------- quality
def test_pass_at_k_closed_form():
    d = Difficulty(1.0, 1.0)                 # uniform success rates: pass@k = k / (k + 1)
    for k in (1, 2, 9, 99):
        assert d.pass_at_k(k) == pytest.approx(k / (k + 1))
    assert d.pass_at_k(0) == 0.0
    assert d.pass_at_1 == 0.5


def test_heavy_tail_makes_coverage_a_power_law():
    d = Difficulty(0.3, 1.2)
    fail = 1 - np.asarray(d.pass_at_k([1000, 10_000, 100_000]))
    slopes = np.diff(np.log(fail)) / math.log(10)
    assert slopes == pytest.approx([-0.3, -0.3], abs=0.01)     # 1 - pass@k ~ k^-alpha


def test_fit_difficulty_round_trips():
    d = fit_difficulty(0.40, 0.80, 64)
    assert d.pass_at_1 == pytest.approx(0.40)
    assert d.pass_at_k(64) == pytest.approx(0.80, abs=1e-6)
    assert d.alpha < 1                                            # a heavy tail of hard problems
    k = d.samples_for(0.9)
    assert d.pass_at_k(k) >= 0.9 > d.pass_at_k(k - 1)
    with pytest.raises(InputError):
        fit_difficulty(0.5, 0.4, 8)
    with pytest.raises(InputError):
        fit_difficulty(0.5, 0.999, 2)                             # more than equal difficulty allows


def test_majority_vote():
    easy = Difficulty(8.0, 2.0)                                    # mostly p > 1/2: voting helps
    assert easy.majority_at_k(1) == pytest.approx(easy.pass_at_1, abs=1e-3)
    assert easy.majority_at_k(9) > easy.majority_at_k(1)
    hard = Difficulty(2.0, 8.0)                                    # mostly p < 1/2: voting hurts
    assert hard.majority_at_k(9) < hard.majority_at_k(1)
    assert easy.majority_at_k(9) <= easy.pass_at_k(9)
    with pytest.raises(InputError):
        easy.majority_at_k(0)


def test_unreachable_target():
    assert Difficulty(0.05, 5.0).samples_for(0.99, k_max=1000) is None
    with pytest.raises(InputError):
        Difficulty(1, 1).samples_for(1.5)
    with pytest.raises(InputError):
        Difficulty(0, 1)
