"""Post-training kinds as work (phases, tokens, FLOPs) and the derivative
ecosystem generator: kinds and mixes, arrival processes, release-spawned
derivatives, job work items."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sim.catalogs import load_catalogs
from sim.engine import PoolInfo, WorkloadContext
from sim.generators import arrival_times, jobs_for_workload, kind_counts, MONTH_S
from sim.scenario import load_scenario
from workloads.errors import InputError
from workloads.jobs import GenerationWork, TrainingWork
from workloads.models import load_models
from workloads import post_training as pt

M = load_models()
B8 = M.get("llama3-8b")
B70 = M.get("llama3-70b")
D = 1e9


def _flops(kind, **kw):
    return pt.total_flops(pt.phases(kind, B8, D, **kw))


def test_sft_is_three_forward_passes():
    [ph] = pt.phases("sft", B8, D, seq_len=4096)
    assert ph.action == "train" and ph.method == "full"
    assert ph.flops == pytest.approx(3 * B8.forward_flops_per_token(2048) * D)
    assert ph.flops == pytest.approx(6 * B8.params_total * D, rel=0.1)


def test_lora_adapter_count_matches_peft():
    # PEFT LoRA r=16 on q,k,v,o,gate,up,down of Llama 3 8B: 41,943,040 weights
    assert pt.lora_params(B8, 16) == 41_943_040


def test_lora_costs_about_two_thirds_of_sft():
    ratio = _flops("lora") / _flops("sft")
    assert 0.66 < ratio < 0.70


def test_distillation_is_teacher_generation_plus_student_training():
    steps = pt.phases("distillation", B8, D, teacher=B70, prompt_tokens=500, response_tokens=1000)
    gen, train = steps
    assert (gen.action, gen.model.name, train.action, train.model.name) == ("generate", "llama3-70b", "train", "llama3-8b")
    assert gen.samples == pytest.approx(D / 1000)
    # decode of D tokens on a 70B teacher is ~2 x 70B FLOPs per token, plus prompts
    assert gen.flops == pytest.approx(2 * B70.params_matmul_active * D * 1.5, rel=0.1)
    assert pt.total_flops(steps) == pytest.approx(gen.flops + _flops("sft"))


@given(st.floats(min_value=0.25, max_value=16))
@settings(max_examples=15, deadline=None)
def test_rl_rollouts_scale_with_the_ratio(r):
    one = pt.phases("rl", B8, D, rollout_ratio=1.0)
    more = pt.phases("rl", B8, D, rollout_ratio=r)
    assert [p.action for p in more] == ["generate", "score", "train"]
    assert more[0].tokens == pytest.approx(r * D)
    assert more[1].flops == pytest.approx(r * one[1].flops)
    assert more[2].flops == pytest.approx(one[2].flops)


@given(st.integers(min_value=1, max_value=64))
@settings(max_examples=15, deadline=None)
def test_best_of_n_is_linear_in_n(n):
    assert _flops("best_of_n", samples=n) == pytest.approx(n * _flops("best_of_n", samples=1))


def test_search_costs_more_than_best_of_n_and_synthetic_data_is_generation():
    assert _flops("search", samples=8) > _flops("best_of_n", samples=8)
    [gen] = pt.phases("synthetic_data", B8, D, teacher=B70)
    assert gen.action == "generate" and gen.model is B70


def test_reward_model_defaults_to_the_base():
    steps = pt.phases("rl", B8, D)
    assert steps[1].model is B8
    steps = pt.phases("rl", B8, D, reward=B70)
    assert steps[1].model is B70


def test_bad_kind_and_values():
    with pytest.raises(InputError, match="post-training kind"):
        pt.phases("dpo", B8, D)
    with pytest.raises(InputError):
        pt.phases("sft", B8, 0)
    with pytest.raises(InputError):
        pt.phases("rl", B8, D, rollout_ratio=-1)


# ------------------------------------------------------------- generator
CLUSTER = {"system": "dgx-h100", "nodes": 16}


def _ctx(scenario, index, estimate_s=None):
    cat = load_catalogs(None)
    system = cat.hardware.system(scenario.cluster.pools[0].system)
    pool = PoolInfo(scenario.cluster.pools[0].name, system, cat.hardware.system_gpu(system),
                    cat.hardware.fabric(system.fabric), scenario.cluster.pools[0].nodes, system.gpus_per_node)
    return WorkloadContext(scenario=scenario, catalogs=cat, workload=scenario.workloads[index], index=index,
                           rng=np.random.default_rng([scenario.seed, index]), horizon_s=scenario.duration,
                           pools={pool.name: pool}, pool=pool, estimate_s=estimate_s)


def _scenario(*workloads, duration="90d"):
    return load_scenario({"cluster": CLUSTER, "duration": duration, "workloads": list(workloads)})


def _jobs(*workloads, index=None, estimate_s=None, duration="90d"):
    sc = _scenario(*workloads, duration=duration)
    i = len(workloads) - 1 if index is None else index
    return jobs_for_workload(sc.workloads[i], _ctx(sc, i, estimate_s))


def test_one_kind_makes_count_jobs_with_phased_work():
    jobs = _jobs({"family": "post_training", "kind": "distillation", "base_model": "llama3-8b",
                  "teacher_model": "llama3-70b", "count": 12, "tokens": "2B", "gpus": 8,
                  "arrival": {"start": "1d", "end": "31d"}})
    assert len(jobs) == 12 and len({j.job_id for j in jobs}) == 12
    assert all(j.family == "post_training" and j.kind == "distillation" and j.gpus == 8 for j in jobs)
    assert all(86400 <= j.submit_s <= 31 * 86400 for j in jobs)
    gen, train = jobs[0].phases()
    assert isinstance(gen, GenerationWork) and gen.model.name == "llama3-70b"
    assert gen.sequences * gen.output_tokens == pytest.approx(2e9)
    assert isinstance(train, TrainingWork) and train.tokens == 2e9 and train.model.name == "llama3-8b"
    assert jobs[0].meta["flops"] > 0


def test_lora_work_carries_the_rank():
    [job] = _jobs({"family": "post_training", "kind": "lora", "base_model": "llama3-8b", "count": 1,
                   "gpus": 8, "lora_rank": 64})
    [work] = job.phases()
    assert dict(work.options) == {"kind": "lora", "lora_rank": 64}


def test_reward_scoring_is_prefill_work():
    [job] = _jobs({"family": "post_training", "kind": "best_of_n", "base_model": "llama3-8b", "count": 1,
                   "samples": 4, "tokens": "1B", "gpus": 8, "reward_model": "llama3-70b",
                   "prompt_tokens": 500, "response_tokens": 1500})
    gen, score = job.phases()
    assert gen.sequences * gen.output_tokens == pytest.approx(4e9)
    assert score.model.name == "llama3-70b" and score.output_tokens == 1
    assert score.input_tokens == 2000 and score.sequences == pytest.approx(gen.sequences)


@given(st.integers(min_value=1, max_value=500),
       st.dictionaries(st.sampled_from(pt.KINDS), st.floats(min_value=0.01, max_value=5), min_size=1))
@settings(max_examples=40, deadline=None)
def test_mix_apportions_exactly(count, mix):
    sc = _scenario({"family": "post_training", "mix": mix, "base_model": "llama3-8b", "count": count, "gpus": 8})
    counts = kind_counts(sc.workloads[0])
    assert sum(counts.values()) == count
    total = sum(mix.values())
    for k, c in counts.items():
        assert abs(c - count * mix[k] / total) < 1


def test_demand_is_linear_in_the_number_of_derivatives():
    def total(count):
        jobs = _jobs({"family": "post_training", "mix": {"sft": 1, "lora": 2, "rl": 1}, "base_model": "llama3-8b",
                      "count": count, "gpus": 8})
        return sum(j.meta["flops"] for j in jobs), len(jobs)
    f1, n1 = total(40)
    f3, n3 = total(120)
    assert n3 == 3 * n1 and f3 == pytest.approx(3 * f1)


def test_arrival_processes():
    rng = np.random.default_rng(1)
    t = arrival_times("poisson", 20000, 0, 100 * 86400, rng)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() <= 100 * 86400
    assert np.mean(t) == pytest.approx(50 * 86400, rel=0.02)
    assert np.all(arrival_times("burst", 5, 7.0, 100.0, rng) == 7.0)
    g = arrival_times("growth", 40000, 0, 2 * MONTH_S, rng, growth=4.0)
    first, second = np.sum(g < MONTH_S), np.sum(g >= MONTH_S)
    assert second / first == pytest.approx(4.0, rel=0.05)


def test_arrivals_are_deterministic_per_seed():
    w = {"family": "post_training", "kind": "sft", "base_model": "llama3-8b", "count": 30, "gpus": 8}
    a = [j.submit_s for j in _jobs(w)]
    b = [j.submit_s for j in _jobs(w)]
    assert a == b


PRE = {"family": "pretraining", "name": "base", "params": "8B", "tokens": "160B", "gpus": 64, "submit": "2d"}


def test_release_spawns_derivatives_after_the_base():
    post = {"family": "post_training", "kind": "sft", "after_pretraining": "base", "count": 5, "gpus": 8,
            "arrival": {"process": "burst", "start": "1d"}}
    jobs = _jobs(PRE, post, estimate_s=lambda job: 10 * 86400.0)
    assert all(j.after == ("base",) for j in jobs)
    # released at submit (2d) + estimated 10d; the burst is one day after
    assert all(j.submit_s == pytest.approx(13 * 86400) for j in jobs)
    assert jobs[0].model == "base"  # the base is the pretraining run's model
    pre = _jobs(PRE, post, index=0)
    assert [j.job_id for j in pre] == ["base"]


def test_roadmap_releases_each_spawn_an_ecosystem():
    road = {"family": "pretraining", "name": "frontier", "gpus": 128,
            "roadmap": {"start_compute": 1e23, "growth_per_year": 4, "every": "3mo", "count": 2}}
    post = {"family": "post_training", "kind": "lora", "after_pretraining": "frontier", "count": 3, "gpus": 8}
    jobs = _jobs(road, post, duration="1y")
    assert len(jobs) == 6
    assert {j.after for j in jobs} == {("frontier-0",), ("frontier-1",)}
    assert {j.model for j in jobs} == {"frontier-0", "frontier-1"}


def test_unknown_pretraining_name_suggests():
    post = {"family": "post_training", "kind": "sft", "after_pretraining": "bsae", "count": 1, "gpus": 8}
    with pytest.raises(InputError, match="did you mean 'base'"):
        _jobs(PRE, post)


def test_post_training_needs_a_base():
    with pytest.raises(InputError, match="base_model"):
        _scenario({"family": "post_training", "kind": "sft", "count": 1, "gpus": 8})


def test_arrival_window_must_not_end_before_it_starts():
    with pytest.raises(InputError, match="before it starts"):
        _jobs({"family": "post_training", "kind": "sft", "base_model": "llama3-8b", "count": 2, "gpus": 8,
               "arrival": {"start": "10d", "end": "2d"}})


def test_derivative_that_cannot_fit_fails_before_the_run():
    from sim.placement import tightest_estimator
    from sim.engine import build_pools
    from sim.placement import WorkTimer

    sc = _scenario({"family": "post_training", "kind": "sft", "base_model": "llama3-405b", "count": 2, "gpus": 8})
    cat = load_catalogs(None)
    est = tightest_estimator(build_pools(sc, cat), WorkTimer(cat.models))
    with pytest.raises(InputError, match=r"workloads\[0\] \(sft, 8 GPUs\)"):
        jobs_for_workload(sc.workloads[0], _ctx(sc, 0, est))


def test_released_model_teaches_a_named_student():
    post = {"family": "post_training", "kind": "distillation", "after_pretraining": "base", "base_model": "llama3-8b",
            "count": 1, "gpus": 8}
    [job] = _jobs(dict(PRE, params="20B", tokens="400B"), post)
    gen, train = job.phases()
    assert gen.model.name == "base" and train.model.name == "llama3-8b"
    assert job.meta["base"] == "llama3-8b"
