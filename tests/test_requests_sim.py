"""Request-level serving simulation (sim/requests.py): queueing closed forms,
timing against the serving model, invariants, routers, disaggregation,
prefix caching, scenario glue."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.perf_serving import decode_step_time, iteration_time, kv_transfer_time
from sim.catalogs import load_catalogs
from sim.requests import (REQUEST_COLUMNS, SAMPLE_TRACE, RequestSimSpec, _StepCost, serving_config,
                          simulate_requests, spec_from_workload, write_requests_csv)
from sim.scenario import load_scenario
from workloads.errors import InputError
from workloads.traces import RequestTrace, arrival_times, load_trace, synthetic_trace

REAL_TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure_llm_inference_2023_conv.csv"
CAT = load_catalogs()


def spec(trace, **kw):
    base = dict(model="llama3-8b", system="dgx-h100", trace=trace)
    base.update(kw)
    return RequestSimSpec(**base)


def cfg_of(**kw):
    return serving_config(spec(None, **kw), CAT)


def one(inp, out, at=0.0):
    return RequestTrace([at], [inp], [out])


# ---------------------------------------------------------------- timing
def test_isolated_request_matches_the_serving_model():
    cfg = cfg_of()
    I, O = 700, 50
    res = simulate_requests(spec(one(I, O)))
    row = res.requests.iloc[0]
    prefill = iteration_time(cfg, I, (I + 1) / 2, 0, 0)
    decode = sum(decode_step_time(cfg, 1, I + j) for j in range(1, O))
    assert row.ttft_s == pytest.approx(prefill, rel=1e-9)
    assert row.e2e_s == pytest.approx(prefill + decode, rel=1e-9)
    assert row.tpot_s == pytest.approx(decode / (O - 1), rel=1e-9)


def test_chunked_prefill_splits_a_long_prompt():
    cfg = cfg_of(max_num_tokens=1024)
    I = 2500
    res = simulate_requests(spec(one(I, 1), max_num_tokens=1024))
    # chunks of 1024, 1024, 452; each attends to what came before plus its causal half
    want = sum(iteration_time(cfg, n, (n * done + n * (n + 1) / 2) / n, 0, 0)
               for n, done in ((1024, 0), (1024, 1024), (452, 2048)))
    assert res.requests.ttft_s[0] == pytest.approx(want, rel=1e-9)
    whole = simulate_requests(spec(one(I, 1), max_num_tokens=1024, chunked_prefill=False))
    assert whole.requests.ttft_s[0] == pytest.approx(iteration_time(cfg, I, (I + 1) / 2, 0, 0), rel=1e-9)


def test_decode_stretches_sum_exactly():
    cost = _StepCost(cfg_of())
    for b, c0, k in ((1, 10, 500), (7, 3000, 1000), (64, 100000, 37), (300, 5, 2000)):
        exact = sum(decode_step_time(cost.cfg, b, c0 + i * b) for i in range(k))
        assert cost.decode_time(b, c0, k) == pytest.approx(exact, rel=1e-9)
        # steps_within inverts decode_time
        for j in (0, 1, k // 3, k - 1):
            t = cost.decode_time(b, c0, j)
            assert cost.steps_within(b, c0, t * (1 + 1e-12) + 1e-15) == j
            assert cost.steps_within(b, c0, cost.decode_time(b, c0, j + 1) * (1 - 1e-9)) == j


def test_arrival_joins_a_running_batch_at_the_next_iteration():
    cfg = cfg_of()
    # a long decode is running; a second request arrives in the middle of it
    res = simulate_requests(spec(RequestTrace([0.0, 0.5], [100, 100], [400, 5])))
    df = res.requests
    t, ctx = df.first_token_s[0], 101
    while t < 0.5:                       # decode steps of the first request alone
        t += decode_step_time(cfg, 1, ctx)
        ctx += 1
    # at that iteration boundary the newcomer's prompt rides along with the decode
    mixed = iteration_time(cfg, 100, 50.5, 1, ctx)
    assert df.first_token_s[1] == pytest.approx(t + mixed, rel=1e-9)


# ------------------------------------------------------------- queueing
def _mg1_setup(n, seed):
    rng = np.random.default_rng(seed)
    outs = np.maximum(1, rng.geometric(1 / 60, size=n))       # ~exponential output lengths: M/M/1-like
    return outs


def test_single_replica_without_batching_is_a_fifo_queue():
    """max_batch 1: one server, FIFO; the waits must follow Lindley's
    recursion on the serving model's service times exactly."""
    cfg = cfg_of()
    I, n = 400, 3000
    outs = _mg1_setup(n, 11)
    pf = iteration_time(cfg, I, (I + 1) / 2, 0, 0)
    steps = np.cumsum([0.0] + [decode_step_time(cfg, 1, I + j) for j in range(1, int(outs.max()))])
    service = pf + steps[outs - 1]
    lam = 0.5 / service.mean()
    arr = arrival_times(lam, np.random.default_rng(12), count=n)
    res = simulate_requests(spec(RequestTrace(arr, np.full(n, I), outs), max_batch=1))
    wait = np.zeros(n)
    for i in range(1, n):
        wait[i] = max(0.0, wait[i - 1] + service[i - 1] - (arr[i] - arr[i - 1]))
    assert np.allclose(res.requests.ttft_s.to_numpy(), wait + pf, rtol=1e-9, atol=1e-9)
    assert np.allclose(res.requests.e2e_s.to_numpy(), wait + service, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("rho", [0.3, 0.6])
def test_mean_wait_matches_pollaczek_khinchine(rho):
    """Low-load M/G/1 closed form: E[W] = lambda E[S^2] / (2 (1 - rho))."""
    cfg = cfg_of()
    I, n = 300, 20000
    outs = _mg1_setup(n, 21)
    pf = iteration_time(cfg, I, (I + 1) / 2, 0, 0)
    steps = np.cumsum([0.0] + [decode_step_time(cfg, 1, I + j) for j in range(1, int(outs.max()))])
    service = pf + steps[outs - 1]
    es, es2 = service.mean(), (service ** 2).mean()
    lam = rho / es
    arr = arrival_times(lam, np.random.default_rng(22), count=n)
    res = simulate_requests(spec(RequestTrace(arr, np.full(n, I), outs), max_batch=1))
    wq = lam * es2 / (2 * (1 - rho))
    assert res.requests.ttft_s.mean() == pytest.approx(wq + pf, rel=0.08)
    assert res.summary["e2e_mean_s"] == pytest.approx(wq + es, rel=0.06)


def test_more_replicas_never_worsen_p99_ttft():
    tr = load_trace(SAMPLE_TRACE, time_scale=0.1)                # 10x the recorded rate
    p99 = []
    for replicas in (1, 2, 3, 4, 6):
        s = simulate_requests(spec(tr, replicas=replicas, model="llama3-70b", tp=4)).summary
        assert s["requests_completed"] == len(tr)
        p99.append(s["ttft_p99_s"])
    assert all(b <= a * (1 + 1e-9) for a, b in zip(p99, p99[1:])), p99
    assert p99[-1] < p99[0] / 3


def test_batching_raises_throughput_under_overload():
    tr = synthetic_trace(200.0, 500, 100, np.random.default_rng(0), count=2000)
    one_at_a_time = simulate_requests(spec(tr, max_batch=1)).summary
    batched = simulate_requests(spec(tr, max_batch=256)).summary
    assert batched["output_tokens_per_s"] > 10 * one_at_a_time["output_tokens_per_s"]
    assert batched["ttft_p99_s"] < one_at_a_time["ttft_p99_s"]


# ------------------------------------------------------------- invariants
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 120), rate=st.floats(0.5, 200), mean_in=st.integers(10, 4000), mean_out=st.integers(1, 400),
       replicas=st.integers(1, 3), router=st.sampled_from(["round-robin", "least-outstanding", "kv-aware", "random"]),
       chunked=st.booleans(), budget=st.sampled_from([128, 2048, 8192]), max_batch=st.sampled_from([1, 3, 64]),
       kv=st.sampled_from([6000, 30000, None]), hit=st.sampled_from([0.0, 0.5]), samples=st.sampled_from([1, 2]),
       disagg=st.booleans(), horizon=st.sampled_from([None, 2.0]), verify=st.sampled_from([0, 1]),
       seed=st.integers(0, 99))
def test_conservation_and_kv_bounds(n, rate, mean_in, mean_out, replicas, router, chunked, budget, max_batch, kv,
                                    hit, samples, disagg, horizon, verify, seed):
    tr = synthetic_trace(rate, {"mean": mean_in, "distribution": "lognormal"},
                         {"mean": mean_out, "distribution": "lognormal"}, np.random.default_rng(seed), count=n)
    sp = spec(tr, replicas=replicas, router=router, chunked_prefill=chunked, max_num_tokens=budget,
              max_batch=max_batch, kv_capacity_tokens=kv, prefix_cache_hit_rate=hit, samples=samples,
              prefill_replicas=replicas if disagg else 0, decode_replicas=2 if disagg else 0, horizon_s=horizon,
              verifier_passes=verify)
    res = simulate_requests(sp, seed=seed)
    df, rep, s = res.requests, res.replicas, res.summary
    # every request is accounted for exactly once
    assert len(df) == n and sorted(df.request_id) == list(range(n))
    assert s["requests_completed"] + s["requests_unfinished"] + s["requests_rejected"] == n
    assert set(df.state) <= {"completed", "unfinished", "rejected"}
    cap = rep.kv_capacity_tokens.iloc[0]
    # rejected ones could never fit the KV cache, a batch, or the model's context
    rej = df[df.state == "rejected"]
    out = rej.output_tokens.clip(lower=1)
    verifier_prompt = samples * (rej.input_tokens + out) + 1 if verify else 0
    assert ((rej.input_tokens + samples * out > cap) | (verifier_prompt > cap) | (samples > max_batch)).all()
    assert (rep.peak_kv_tokens <= rep.kv_capacity_tokens).all()
    done = df[df.state == "completed"]
    assert (done.ttft_s >= 0).all() and (done.e2e_s >= done.ttft_s).all() and (done.finish_s >= done.arrival_s).all()
    if horizon is None:
        assert s["requests_unfinished"] == 0
        assert (rep.kv_tokens_in_use == 0).all()
    else:
        assert (done.finish_s <= horizon + 1e-9).all()
        assert df[df.state == "unfinished"].finish_s.isna().all()


def test_kv_pressure_preempts_and_recomputes():
    tr = synthetic_trace(50.0, 2000, 1000, np.random.default_rng(1), count=60)
    tight = simulate_requests(spec(tr, kv_capacity_tokens=12000))
    roomy = simulate_requests(spec(tr))
    assert tight.summary["requests_completed"] == 60 and tight.summary["preemptions"] > 0
    assert roomy.summary["preemptions"] == 0
    assert tight.summary["e2e_p99_s"] > roomy.summary["e2e_p99_s"]
    assert tight.replicas.peak_kv_tokens[0] <= 12000


def test_horizon_leaves_requests_unfinished():
    tr = synthetic_trace(20.0, 1000, 2000, np.random.default_rng(2), count=200)
    res = simulate_requests(spec(tr, horizon_s=5.0))
    s = res.summary
    assert s["requests_unfinished"] > 0
    assert s["requests_completed"] + s["requests_unfinished"] == 200
    assert s["slo_attainment"] <= s["requests_completed"] / 200


def test_same_seed_same_result():
    sp = spec(None, requests_per_s=30.0, duration_s=20.0, input_tokens={"mean": 800, "distribution": "lognormal"},
              output_tokens={"mean": 150, "distribution": "lognormal"}, arrival_process="gamma", arrival_cv=2.0,
              replicas=2)
    a, b = simulate_requests(sp, seed=3), simulate_requests(sp, seed=3)
    assert a.requests.equals(b.requests) and a.summary == b.summary
    c = simulate_requests(sp, seed=4)
    assert not a.requests.arrival_s.equals(c.requests.arrival_s)


# ------------------------------------------------- routers, caches, pools
def test_round_robin_spreads_evenly():
    tr = synthetic_trace(5.0, 100, 10, np.random.default_rng(0), count=90)
    res = simulate_requests(spec(tr, replicas=3, router="round-robin"))
    assert res.requests.replica.value_counts().tolist() == [30, 30, 30]


def test_prefix_cache_hit_rate_shortens_prefill():
    tr = one(4000, 2)
    cold = simulate_requests(spec(tr)).requests.iloc[0]
    warm = simulate_requests(spec(tr, prefix_cache_hit_rate=0.75)).requests.iloc[0]
    assert warm.cached_tokens == 3000
    cfg = cfg_of()
    assert warm.ttft_s == pytest.approx(iteration_time(cfg, 1000, 3000 + 1001 / 2, 0, 0), rel=1e-9)
    assert warm.ttft_s < cold.ttft_s / 2


def test_mooncake_hashes_hit_the_replica_that_holds_the_prefix(tmp_path):
    rows = []
    for k in range(40):
        family = k % 2                                  # two conversations, each growing turn by turn
        blocks = [1000 * family + j for j in range(4 + k // 2)]
        rows.append({"timestamp": 1000 * k, "input_length": 512 * len(blocks), "output_length": 20,
                     "hash_ids": blocks})
    p = tmp_path / "mc.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    tr = load_trace(p)
    aware = simulate_requests(spec(tr, replicas=3, router="kv-aware")).requests
    rr = simulate_requests(spec(tr, replicas=3, router="round-robin")).requests
    # kv-aware keeps each conversation on one replica and reuses all but its new block
    assert aware.groupby(np.arange(40) % 2).replica.nunique().tolist() == [1, 1]
    assert (aware.cached_tokens[2:] == aware.input_tokens[2:] - 512).all()
    # round-robin finds only the prefix the replica saw 6 turns earlier: 3 blocks short
    assert (rr.cached_tokens[6:] == rr.input_tokens[6:] - 3 * 512).all()
    assert aware.ttft_s.mean() < rr.ttft_s.mean()


def test_disaggregated_pools_move_kv_between_them():
    cfg = cfg_of()
    I, O = 3000, 30
    res = simulate_requests(spec(one(I, O), prefill_replicas=1, decode_replicas=1))
    row = res.requests.iloc[0]
    assert row.replica == 0 and row.decode_replica == 1
    assert row.ttft_s == pytest.approx(iteration_time(cfg, I, (I + 1) / 2, 0, 0), rel=1e-9)
    colocated = simulate_requests(spec(one(I, O))).requests.iloc[0]
    # the decode side waits for the KV transfer: 2nd token later than colocated
    from hardware.collectives import levels_for_group
    lv = levels_for_group(cfg.system, cfg.fabric, cfg.gpu, 2, stride=1)
    xfer = kv_transfer_time(cfg, I + 1, lv)
    assert xfer > 0
    assert row.e2e_s == pytest.approx(colocated.e2e_s + xfer, rel=1e-6)
    assert res.summary["gpus"] == 2 and res.summary["disaggregated"] is True


def test_disaggregation_shields_decode_from_prefill_bursts():
    tr = synthetic_trace(8.0, {"mean": 6000, "distribution": "lognormal", "sigma": 0.5}, 200,
                         np.random.default_rng(5), count=400)
    col = simulate_requests(spec(tr, replicas=2, model="llama3-70b", tp=4)).summary
    dis = simulate_requests(spec(tr, prefill_replicas=1, decode_replicas=1, model="llama3-70b", tp=4)).summary
    assert dis["tpot_p99_s"] < col["tpot_p99_s"]


def test_parallel_samples_share_the_prompt():
    tr = synthetic_trace(2.0, 1000, 100, np.random.default_rng(6), count=50)
    one_s = simulate_requests(spec(tr)).summary
    four = simulate_requests(spec(tr, samples=4)).summary
    assert four["output_tokens_per_s"] == pytest.approx(4 * one_s["output_tokens_per_s"], rel=0.05)
    assert four["requests_completed"] == 50


def test_requests_beyond_kv_or_context_are_rejected():
    tr = RequestTrace([0, 1, 2], [100, 5000, 100], [10, 10, 10])
    res = simulate_requests(spec(tr, model="llama2-7b"))     # 4,096-token context
    assert res.requests.state.tolist() == ["completed", "rejected", "completed"]
    assert res.summary["slo_attainment"] == pytest.approx(2 / 3)


# ------------------------------------------------------------- outputs
def test_requests_csv_and_summary_keys(tmp_path):
    res = simulate_requests(spec(load_trace(SAMPLE_TRACE, limit=200), slo_ttft_s=0.05, slo_tpot_s=0.1))
    path = tmp_path / "requests.csv"
    write_requests_csv(res, path)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:len(REQUEST_COLUMNS)] == list(REQUEST_COLUMNS)
    s = res.summary
    for key in ("requests_completed", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s",
                "slo_attainment", "output_tokens_per_s", "gpus"):
        assert key in s
    json.dumps(s)
    df = res.requests
    met = ((df.ttft_s <= 0.05) & (df.tpot_s.isna() | (df.tpot_s <= 0.1))).mean()
    assert s["slo_attainment"] == pytest.approx(met)
    span = df.finish_s.max() - df.arrival_s.min()
    assert s["output_tokens_per_s"] == pytest.approx(df.output_tokens.sum() / span)


# --------------------------------------------------------- scenario glue
def scenario(tmp_path, **w):
    work = {"family": "inference", "model": "llama3-70b", "mode": "request", "replicas": 2, "tp": 4,
            "precision": "fp8", "slo": {"ttft": "2s", "tpot": "100ms"}}
    work.update(w)
    return load_scenario({"cluster": {"system": "dgx-h100", "nodes": 2}, "workloads": [work]})


def test_scenario_with_a_trace(tmp_path):
    sc = scenario(tmp_path, trace={"path": SAMPLE_TRACE, "format": "azure-llm", "limit": 300})
    sp = spec_from_workload(sc.workloads[0], sc)
    assert sp.slo_tpot_s == pytest.approx(0.1) and len(sp.trace) == 300
    s = simulate_requests(sp, seed=sc.seed).summary
    assert s["requests_completed"] == 300 and s["gpus"] == 8


def test_scenario_synthetic_with_window_and_no_drain(tmp_path):
    sc = scenario(tmp_path, requests_per_s=20, duration="30s", drain=False,
                  input_tokens={"mean": 2000, "distribution": "lognormal"}, output_tokens=500)
    sp = spec_from_workload(sc.workloads[0], sc)
    res = simulate_requests(sp)
    assert res.summary["simulated_s"] == pytest.approx(30.0)
    assert res.summary["requests_unfinished"] > 0


def test_scenario_bad_router_and_trace(tmp_path):
    with pytest.raises(InputError, match="round-robin"):
        scenario(tmp_path, router="round-robbin", requests_per_s=1)
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,input_tokens,output_tokens\n0,5,5\n1,x,5\n")
    sc = scenario(tmp_path, trace={"path": str(bad)})
    with pytest.raises(InputError, match="bad.csv, line 3"):
        spec_from_workload(sc.workloads[0], sc)


def test_synthetic_stream_needs_a_sane_size():
    with pytest.raises(InputError, match="too many"):
        simulate_requests(spec(None, requests_per_s=1000.0, duration_s=30 * 86400.0))
    with pytest.raises(InputError, match="duration"):
        simulate_requests(spec(None, requests_per_s=1.0))
    with pytest.raises(InputError, match="did you mean"):
        simulate_requests(spec(one(1, 1), router="least-loaded"))


# --------------------------------------------------------------- real trace
@pytest.mark.skipif(not REAL_TRACE.exists(), reason="shared Azure conversation trace not present")
def test_real_azure_conversation_trace_replays():
    tr = load_trace(REAL_TRACE, "azure-llm")
    res = simulate_requests(spec(tr, model="llama3-70b", tp=4, replicas=4))
    s = res.summary
    assert s["requests_completed"] == len(tr) == 19366
    assert s["output_tokens_per_s"] == pytest.approx(tr.output_tokens.sum() / (res.requests.finish_s.max()), rel=0.01)


def test_verifier_passes_extend_e2e_not_tpot():
    cfg = cfg_of()
    I, O = 500, 40
    plain = simulate_requests(spec(one(I, O))).requests.iloc[0]
    checked = simulate_requests(spec(one(I, O), verifier_passes=2)).requests.iloc[0]
    P = I + O
    verify = iteration_time(cfg, P, (P + 1) / 2, 0, 0)
    assert checked.ttft_s == pytest.approx(plain.ttft_s, rel=1e-12)
    assert checked.tpot_s == pytest.approx(plain.tpot_s, rel=1e-12)
    assert checked.e2e_s == pytest.approx(plain.e2e_s + 2 * verify, rel=1e-9)
    dis = simulate_requests(spec(one(I, O), verifier_passes=1, prefill_replicas=1, decode_replicas=1))
    assert dis.summary["requests_completed"] == 1


def test_search_verifier_scores_every_candidate_each_step():
    cfg = cfg_of()
    I, O = 400, 60
    plain = simulate_requests(spec(one(I, O), samples=2)).requests.iloc[0]
    searched = simulate_requests(spec(one(I, O), samples=2, search_depth=2, verifier_passes=1)).requests.iloc[0]
    # step 1 scores 2 candidates over prompt + 30 tokens, step 2 over prompt + 60 (2 sequences each)
    want = 0.0
    for text in (I + 30, I + 60):
        want += iteration_time(cfg, 2 * text, (text + 1) / 2, 0, 0, 2)
    assert searched.e2e_s == pytest.approx(plain.e2e_s + want, rel=1e-9)


def test_scenario_search_and_reasoning_output(tmp_path):
    sc = scenario(tmp_path, model="llama3-8b", tp=1, requests_per_s=2, duration="20s", samples_per_request=2,
                  search={"branching": 2, "depth": 3}, verifier_passes=1,
                  output_tokens={"thinking": 2000, "answer": 300, "distribution": "lognormal"})
    sp = spec_from_workload(sc.workloads[0], sc)
    assert (sp.samples, sp.search_depth, sp.verifier_passes) == (4, 3, 1)
    res = simulate_requests(sp, seed=1)
    assert res.summary["requests_completed"] == res.summary["requests_total"] > 20
    assert res.requests.output_tokens.mean() == pytest.approx(2300, rel=0.35)


def test_combined_summary_of_two_workloads():
    from sim.requests import combine_summaries
    a = simulate_requests(spec(load_trace(SAMPLE_TRACE, limit=300), slo_ttft_s=0.03))
    b = simulate_requests(spec(load_trace(SAMPLE_TRACE, limit=100), replicas=2, model="llama3-70b", tp=4))
    both = combine_summaries([("a", a), ("b", b)])
    assert both["requests_total"] == 400 and both["requests_completed"] == 400
    assert both["gpus"] == 1 + 8
    assert both["output_tokens_per_s"] == pytest.approx(a.summary["output_tokens_per_s"] + b.summary["output_tokens_per_s"])
    want = (a.requests.slo_met.sum() + b.requests.slo_met.sum()) / 400
    assert both["slo_attainment"] == pytest.approx(want)
    assert 0 < a.summary["slo_attainment"] < 1 and set(both["workloads"]) == {"a", "b"}
    assert both["ttft_p99_s"] == pytest.approx(np.percentile(np.r_[a.requests.ttft_s, b.requests.ttft_s], 99))
