"""The training work/memory model (workloads/training.py) and the step-time
model on hardware (hardware/perf_training.py): closed forms, invariants,
and the errors bad layouts raise."""
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from hardware import perf_training as pt
from hardware.catalog import load_catalog
from workloads.errors import InputError
from workloads.models import build_model, load_models
from workloads.training import (GRAD_BYTES, OPTIMIZER_BYTES, WEIGHT_BYTES, ParallelConfig, Setup, Stack,
                                causal_context, get_stack, layer_work, lora_params, megatron_hw_flops_per_step,
                                memory_per_gpu, model_flops_per_token)

CAT = load_catalog()
MODELS = load_models()
GPT = build_model("gpt-test", dict(layers=24, hidden=2048, heads=16, ffn=8192, vocab=51200, gated=False))
LEGACY = Stack(attention="unfused", sequence_parallel=False, interleaved=True, dp_overlap=False,
               zero_stages=(0,), context_parallel=False)


def hw(name):
    gpu, system = pt.typical_system(CAT, name)
    return gpu, system, CAT.fabric(system.fabric)


# ---------------------------------------------------------------------------
# work per token
# ---------------------------------------------------------------------------

def test_model_flops_are_six_n_plus_causal_attention():
    m = MODELS.get("llama3-8b")
    s = Setup(model=m, seq_len=8192, global_batch_seqs=1)
    attn = 2.0 * m.layers * m.heads * (m.hd + m.hd) * (8192 + 1) / 2
    assert model_flops_per_token(s) == pytest.approx(6 * m.params_matmul_active + 3 * attn)


def test_attention_flops_grow_with_sequence_and_packing_shrinks_them():
    m = MODELS.get("llama3-8b")
    short = model_flops_per_token(Setup(model=m, seq_len=2048, global_batch_seqs=1))
    long = model_flops_per_token(Setup(model=m, seq_len=32768, global_batch_seqs=1))
    packed = model_flops_per_token(Setup(model=m, seq_len=32768, global_batch_seqs=1, doc_tokens=2048))
    assert long > short
    assert packed == pytest.approx(short)
    assert causal_context(1) == 1 and causal_context(4095) == 2048


def test_lora_skips_base_weight_gradients():
    m = MODELS.get("llama3-8b")
    s = Setup(model=m, seq_len=4096, global_batch_seqs=1, kind="lora", lora_rank=8)
    full = Setup(model=m, seq_len=4096, global_batch_seqs=1)
    extra = model_flops_per_token(full) - 6 * m.params_matmul_active
    assert model_flops_per_token(s) == pytest.approx(4 * m.params_matmul_active + 6 * lora_params(m, 8) + extra)
    # rank r adapters on q,k,v,o (h x (h + 2 kv_dim)) and gate/up/down: r x (in + out) each
    h, kvd, f = 4096, 8 * 128, 14336
    per_layer = 8 * ((h + (h + 2 * kvd)) + (h + h)) + 8 * 3 * (h + f)
    assert lora_params(m, 8) == pytest.approx(32 * per_layer)


def test_megatron_formula_matches_the_paper_example():
    # GPT-3 175B, batch 1536, seq 2048 (Narayanan et al. 2021 eq. 3)
    f = megatron_hw_flops_per_step(96, 12288, 51200, 2048, 1536)
    expect = 96 * 1536 * 2048 * 96 * 12288 ** 2 * (1 + 2048 / (6 * 12288) + 51200 / (16 * 96 * 12288))
    assert f == pytest.approx(expect)


# ---------------------------------------------------------------------------
# activation memory: Korthikanti et al. 2022 closed forms
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("tp,sp", [(1, False), (4, False), (4, True), (8, True)])
def test_activation_bytes_match_korthikanti(tp, sp):
    s, b, h, a = 2048, 2, GPT.hidden, GPT.heads
    setup = Setup(model=GPT, seq_len=s, global_batch_seqs=8, stack=LEGACY)
    p = ParallelConfig(tp=tp, micro_batch=b, sp=sp, recompute="none")
    w = layer_work(GPT, False, setup, p)
    linear = 34 * s * b * h / tp if sp else s * b * h * (10 + 24 / tp)
    assert w.act_bytes == pytest.approx(linear + 5 * a * s * s * b / tp)
    full = layer_work(GPT, False, setup, ParallelConfig(tp=tp, micro_batch=b, sp=sp, recompute="full"))
    assert full.act_bytes == pytest.approx(2 * s * b * h / (tp if sp else 1))
    sel = layer_work(GPT, False, setup, ParallelConfig(tp=tp, micro_batch=b, sp=sp, recompute="selective"))
    assert sel.act_bytes < linear      # the s^2 scores (and the activation function) are recomputed


def test_flash_attention_stores_no_scores():
    setup = Setup(model=GPT, seq_len=8192, global_batch_seqs=8)
    short = Setup(model=GPT, seq_len=2048, global_batch_seqs=8)
    p = ParallelConfig(recompute="none")
    # linear in sequence length: 4x the tokens, 4x the bytes
    assert layer_work(GPT, False, setup, p).act_bytes == pytest.approx(4 * layer_work(GPT, False, short, p).act_bytes)


def test_states_bytes_and_zero_sharding():
    m = build_model("tiny", dict(layers=8, hidden=1024, heads=8, ffn=4096, vocab=32000))
    setup = Setup(model=m, seq_len=1024, global_batch_seqs=64)
    params = m.params_total
    mem0 = memory_per_gpu(setup, ParallelConfig(dp=8, zero=0, recompute="full"))
    assert mem0.weights + mem0.gradients + mem0.optimizer == pytest.approx(
        params * (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES))
    mems = [memory_per_gpu(setup, ParallelConfig(dp=8, zero=z, recompute="full")) for z in (0, 1, 2, 3)]
    states = [x.weights + x.gradients + x.optimizer for x in mems]
    assert states[0] > states[1] > states[2] > states[3] and states[3] < states[0] / 4
    mem1 = memory_per_gpu(setup, ParallelConfig(dp=8, zero=1, recompute="full"))
    assert mem1.optimizer == pytest.approx(params * OPTIMIZER_BYTES / 8)
    # with dp = 1 nothing is sharded
    assert memory_per_gpu(setup, ParallelConfig(dp=1, zero=3)).weights >= mem0.weights


def test_lora_memory_has_no_base_gradients_or_optimizer():
    m = MODELS.get("llama3-8b")
    full = memory_per_gpu(Setup(model=m, seq_len=4096, global_batch_seqs=8, kind="sft"), ParallelConfig(dp=1, zero=0))
    lora = memory_per_gpu(Setup(model=m, seq_len=4096, global_batch_seqs=8, kind="lora"), ParallelConfig(dp=1, zero=0))
    assert lora.optimizer < full.optimizer / 100 and lora.gradients < full.gradients / 100
    assert lora.weights == pytest.approx(full.weights, rel=0.02)


def test_expert_parallelism_shards_expert_weights():
    m = MODELS.get("mixtral-8x7b")
    s = Setup(model=m, seq_len=4096, global_batch_seqs=64)
    one = memory_per_gpu(s, ParallelConfig(dp=8, ep=1, zero=1, recompute="full"))
    eight = memory_per_gpu(s, ParallelConfig(dp=8, ep=8, zero=1, recompute="full"))
    assert eight.weights < one.weights / 3


def test_context_parallel_splits_activations():
    m = MODELS.get("llama3-70b")
    s = Setup(model=m, seq_len=65536, global_batch_seqs=64)
    a1 = layer_work(m, False, s, ParallelConfig(tp=8, cp=1, recompute="none")).act_bytes
    a4 = layer_work(m, False, s, ParallelConfig(tp=8, cp=4, recompute="none")).act_bytes
    assert a4 == pytest.approx(a1 / 4, rel=0.01)


# ---------------------------------------------------------------------------
# step time
# ---------------------------------------------------------------------------

def test_gemm_ceiling_reproduces_mamf_at_its_best_shape():
    for (arch, prec), (frac, (m, n, k), tbps, bpe) in pt.GEMM_MAMF.items():
        c = pt.gemm_ceiling(arch, prec)
        peak = {"ampere": 312e12, "hopper": 989.5e12, "blackwell": 2250e12}[arch] * (2 if prec == "fp8" else 1)
        t = 2 * m * n * k / (peak * c) + ((m * k + k * n) * bpe + 2 * m * n) / (tbps * 1e12 * pt.HBM_EFFICIENCY)
        assert 2 * m * n * k / t / peak == pytest.approx(frac, rel=1e-9)
        assert 0 < c <= 1
        # MAMF's best shapes nearly fill their waves
        assert pt.wave_efficiency(arch, m, n) > 0.96


def test_wave_quantization():
    # 132 SMs, 128 x 256 tiles: 132 tiles fill one wave, 133 need two
    assert pt.wave_efficiency("hopper", 128 * 12, 256 * 11) == 1.0
    assert pt.wave_efficiency("hopper", 128 * 133, 256) == pytest.approx(133 / 264)
    # grouped GEMMs share waves: 4 experts of 33 tiles fill one wave
    assert pt.wave_efficiency("hopper", 128 * 33, 256, batch=4) == 1.0
    assert pt.wave_efficiency("ampere", 128 * 109, 256) == pytest.approx(109 / 216)


def test_breakdown_sums_to_step_time_and_outputs_agree():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-70b")
    s = Setup(model=m, seq_len=8192, global_batch_seqs=512)
    e = pt.evaluate(s, ParallelConfig(tp=8, pp=4, dp=32, micro_batch=1, vpp=2, recompute="selective"),
                    gpu, system, fabric)
    top = {k: v for k, v in e.breakdown if not k.startswith(" ")}
    assert sum(top.values()) == pytest.approx(e.step_time_s)
    assert e.tokens_per_s == pytest.approx(e.tokens_per_step / e.step_time_s)
    assert e.mfu == pytest.approx(e.model_flops_per_step / (e.step_time_s * 1024 * gpu.peak_flops("bf16")))
    assert e.hw_tflops_per_gpu >= e.model_tflops_per_gpu
    assert 0.2 < e.mfu < 0.8


def test_interleaving_shrinks_the_bubble():
    gpu, system, fabric = hw("h100")
    s = Setup(model=MODELS.get("llama3-70b"), seq_len=4096, global_batch_seqs=256)
    base = dict(tp=8, pp=8, dp=4, micro_batch=1, recompute="full")
    b1 = pt.evaluate(s, ParallelConfig(vpp=1, **base), gpu, system, fabric).breakdown_dict["pp_bubble"]
    b2 = pt.evaluate(s, ParallelConfig(vpp=2, **base), gpu, system, fabric).breakdown_dict["pp_bubble"]
    assert b2 == pytest.approx(b1 / 2, rel=0.05)


def test_bubble_fraction_is_pp_minus_one_over_m():
    gpu, system, fabric = hw("a100")
    small_vocab = build_model("gpt-v", dict(layers=24, hidden=2048, heads=16, ffn=8192, vocab=256, gated=False))
    s = Setup(model=small_vocab, seq_len=2048, global_batch_seqs=64)
    e = pt.evaluate(s, ParallelConfig(tp=1, pp=4, dp=1, micro_batch=1, recompute="full", zero=0), gpu, system, fabric)
    steady = e.step_time_s - sum(v for k, v in e.breakdown if k in ("pp_bubble", "pp_p2p", "dp_comm", "optimizer"))
    # 24 layers split 6/6/6/6 (negligible output layer): 1F1B bubble = (p - 1) / m of the steady state
    assert e.breakdown_dict["pp_bubble"] / steady == pytest.approx(3 / 64, rel=0.02)


def test_more_gpus_more_throughput_and_fp8_is_faster():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-70b")
    a = pt.estimate_training(m, gpu, system, fabric, 256, seq_len=4096)
    b = pt.estimate_training(m, gpu, system, fabric, 1024, seq_len=4096)
    assert b.tokens_per_s > 2.5 * a.tokens_per_s
    f8 = pt.estimate_training(m, gpu, system, fabric, 1024, seq_len=4096, precision="fp8")
    assert f8.tokens_per_s > 1.2 * b.tokens_per_s


def test_slower_fabric_is_slower():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-8b")
    p = ParallelConfig(tp=1, dp=512, micro_batch=1, recompute="none", zero=1)
    s = Setup(model=m, seq_len=4096, global_batch_seqs=512)
    fast = pt.evaluate(s, p, gpu, system, fabric)
    slow = pt.evaluate(s, p, gpu, system, fabric, oversubscription=8.0)
    assert slow.breakdown_dict["dp_comm"] > fast.breakdown_dict["dp_comm"]
    assert slow.step_time_s > fast.step_time_s


def test_moe_pays_all_to_all_and_uses_fewer_flops_than_its_size():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("mixtral-8x7b")
    s = Setup(model=m, seq_len=4096, global_batch_seqs=256)
    e = pt.evaluate(s, ParallelConfig(tp=1, pp=1, ep=8, dp=64, micro_batch=1, recompute="full", zero=1),
                    gpu, system, fabric)
    assert e.breakdown_dict["ep_comm"] > 0
    assert e.model_flops_per_step < 6 * m.params_total * e.tokens_per_step / 2


def test_lora_and_sft_helpers():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-8b")
    sft, t_sft = pt.estimate_finetune(m, gpu, system, fabric, 8, 1e9, kind="sft")
    lora, t_lora = pt.estimate_finetune(m, gpu, system, fabric, 8, 1e9, kind="lora")
    assert t_lora < t_sft and lora.memory_per_gpu_bytes < sft.memory_per_gpu_bytes
    assert t_sft == pytest.approx(1e9 / sft.tokens_per_s)
    with pytest.raises(InputError):
        pt.estimate_finetune(m, gpu, system, fabric, 8, 1e9, kind="rlhf")


def test_does_not_fit_states_need_and_capacity():
    gpu, system, fabric = hw("h100")
    s = Setup(model=MODELS.get("llama3-405b"), seq_len=8192, global_batch_seqs=64)
    with pytest.raises(InputError) as err:
        pt.evaluate(s, ParallelConfig(tp=8, dp=1, recompute="none", zero=0), gpu, system, fabric)
    assert "needs" in err.value.what and "80.0 GiB" in err.value.what
    with pytest.raises(InputError) as err:
        pt.search(s, gpu, system, fabric, 8)
    assert "fits" in err.value.what


@pytest.mark.parametrize("bad,why", [
    (dict(tp=3), "heads"), (dict(tp=16), "NVLink"), (dict(pp=200), "layers"), (dict(ep=2), "experts"),
    (dict(recompute="some"), "recompute"), (dict(zero=4), "ZeRO"), (dict(vpp=2), "vpp"),
])
def test_invalid_layouts_say_why(bad, why):
    gpu, system, fabric = hw("h100")
    s = Setup(model=MODELS.get("llama3-70b"), seq_len=4096, global_batch_seqs=64)
    with pytest.raises(InputError) as err:
        pt.evaluate(s, ParallelConfig(**bad), gpu, system, fabric)
    assert why in err.value.line()


def test_stack_limits_what_the_search_may_use():
    gpu, system, fabric = hw("a100")
    s = Setup(model=GPT, seq_len=2048, global_batch_seqs=512, stack=get_stack("megatron-deepspeed"))
    for e in pt.search(s, gpu, system, fabric, 64, top=5):
        assert e.parallelism.vpp == 1 and e.parallelism.zero in (0, 1) and e.parallelism.cp == 1
    with pytest.raises(InputError):
        get_stack("nemo-2031")


def test_search_405b_on_16k_h100_is_sorted():
    # its speed (< 1 s) is measured by benchmarks/bench_models.py
    gpu, system, fabric = hw("h100")
    s = Setup(model=MODELS.get("llama3-405b"), seq_len=8192, global_batch_seqs=2048)
    top = pt.search(s, gpu, system, fabric, 16384, top=5)
    times = [e.step_time_s for e in top]
    assert times == sorted(times) and all(e.fits for e in top)
    assert all(e.gpus == 16384 for e in top)
    assert 0.3 < top[0].mfu < 0.6


def test_estimate_is_cached_and_tiers_hashable():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-8b")
    a = pt.estimate_training(m, gpu, system, fabric, 64, seq_len=4096)
    assert pt.estimate_training(m, gpu, system, fabric, 64, seq_len=4096) is a


def test_typical_system_mapping():
    assert pt.typical_system(CAT, "h100")[1].name == "dgx-h100"
    gpu, system = pt.typical_system(CAT, "a100-40gb")
    assert gpu.name == "a100-40gb" and system.gpu == "a100-40gb" and system.nvlink_domain_gpus == 8
    with pytest.raises(InputError):
        pt.typical_system(CAT, "h1000")


@settings(max_examples=25, deadline=None)
@given(layers=st.sampled_from([8, 16, 24]), hidden_mult=st.integers(4, 16), tp=st.sampled_from([1, 2, 4, 8]),
       pp=st.sampled_from([1, 2, 4]), mb=st.sampled_from([1, 2]), rec=st.sampled_from(["none", "selective", "full"]),
       zero=st.sampled_from([0, 1, 2, 3]), seq=st.sampled_from([1024, 4096]))
def test_any_valid_layout_is_consistent(layers, hidden_mult, tp, pp, mb, rec, zero, seq):
    m = build_model("h", dict(layers=layers, hidden=128 * hidden_mult, heads=8 * hidden_mult, ffn=512 * hidden_mult,
                              vocab=32000))
    gpu, system, fabric = hw("h100")
    dp = 64 // (tp * pp)
    s = Setup(model=m, seq_len=seq, global_batch_seqs=256)
    e = pt.evaluate(s, ParallelConfig(tp=tp, pp=pp, dp=dp, micro_batch=mb, recompute=rec, zero=zero),
                    gpu, system, fabric, require_fit=False)
    top = sum(v for k, v in e.breakdown if not k.startswith(" "))
    assert top == pytest.approx(e.step_time_s)
    assert all(v >= 0 for _, v in e.breakdown)
    assert 0 < e.mfu < 1 and e.memory_per_gpu_bytes > 0
    assert math.isfinite(e.tokens_per_s)


# ---------------------------------------------------------------------------
# pipeline memory, stage placement, framework features
# ---------------------------------------------------------------------------

def test_in_flight_micro_batches():
    from workloads.training import in_flight
    # 1F1B: rank r holds pp - r micro-batches, never more than the step has
    assert [in_flight(ParallelConfig(pp=8), 32, r) for r in (0, 1, 7)] == [8, 7, 1]
    assert in_flight(ParallelConfig(pp=8), 4, 0) == 4
    # interleaved (Korthikanti et al. 2022): pp (1 + (pp - 1) / (pp vpp)) on the first stage
    assert in_flight(ParallelConfig(pp=16, vpp=4), 64, 0) == pytest.approx(16 * (1 + 15 / 64))
    # ... but only what the step has: 16 micro-batches of 4 chunks all in flight = 16 stages' worth
    assert in_flight(ParallelConfig(pp=16, vpp=4), 16, 0) == 16
    assert in_flight(ParallelConfig(pp=1), 10, 0) == 1


@settings(max_examples=60, deadline=None)
@given(layers=st.integers(2, 130), pp=st.integers(2, 64), head=st.floats(0.0, 3.0), emb=st.floats(0.0, 0.5))
def test_stage_plan_places_every_layer(layers, pp, head, emb):
    if pp > layers:
        return
    t, (first, second, last) = pt._stage_plan(layers, pp, 1.0, head, emb)
    k = math.ceil(layers / pp)
    assert 0 <= first <= k and 0 <= second <= k and 0 <= last <= k
    if pp == 2:
        assert first + last == layers          # the second stage is the last
    else:
        assert first + last + (pp - 2) * k >= layers >= first + last
    assert t >= math.ceil(layers / pp) - 1 and t >= max(head, emb)
    assert t <= math.ceil(layers / pp) + max(head, emb) + 1e-9


def test_llama3_405b_stages_drop_a_layer_at_each_end():
    # Dubey et al. 2024 Sec. 3.3.2: 126 layers on 16 stages, one layer fewer on the first and last
    _, stages = pt._stage_plan(126, 16, 1.0, 0.66, 0.01)
    assert stages == (7, 8, 7)
    m = MODELS.get("llama3-405b")
    s = Setup(model=m, seq_len=8192, global_batch_seqs=2048)
    p = ParallelConfig(tp=8, pp=16, dp=64, recompute="none")
    even = memory_per_gpu(s, p)
    light = memory_per_gpu(s, p, stages=(7, 8, 7))
    assert light.total < even.total


def test_fp8_keeps_gemm_inputs_at_one_byte():
    s, b, h, f, t = 2048, 1, GPT.hidden, GPT.ffn, 4
    p = ParallelConfig(tp=t, micro_batch=b, sp=True, recompute="none")
    bf = layer_work(GPT, False, Setup(model=GPT, seq_len=s, global_batch_seqs=8), p).act_bytes
    f8 = layer_work(GPT, False, Setup(model=GPT, seq_len=s, global_batch_seqs=8, precision="fp8"), p).act_bytes
    T = s * b
    # QKV and FC1 inputs (h/t each) and the FC2 input (f/t) drop a byte; the
    # output projection keeps its own fp8 copy of the attention output (h/t)
    assert bf - f8 == pytest.approx(T * (2 * h / t + f / t - h / t))


def test_selective_recompute_drops_norm_outputs_and_activation():
    s, h, f, t = 2048, GPT.hidden, GPT.ffn, 2
    setup = Setup(model=GPT, seq_len=s, global_batch_seqs=8)
    none = layer_work(GPT, False, setup, ParallelConfig(tp=t, recompute="none")).act_bytes
    sel = layer_work(GPT, False, setup, ParallelConfig(tp=t, recompute="selective")).act_bytes
    assert none - sel == pytest.approx(s * 2 * (f / t + 2 * h / t))


def test_mla_selective_recompute_drops_the_up_projected_keys_and_values():
    m = MODELS.get("deepseek-v3")
    setup = Setup(model=m, seq_len=4096, global_batch_seqs=8)
    w = layer_work(m, True, setup, ParallelConfig(recompute="selective"))
    assert any(op.name == "kv_up" and op.recompute_selective for op in w.ops)
    none = layer_work(m, True, setup, ParallelConfig(recompute="none")).act_bytes
    up = m.heads * (m.qk_nope_dim + m.v_head_dim)
    assert none - w.act_bytes > 4096 * 2 * up


def test_tp_overlap_hides_all_but_one_chunk():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-70b")
    p = ParallelConfig(tp=8, pp=1, dp=8, micro_batch=1, recompute="full", zero=3)
    on = pt.evaluate(Setup(model=m, seq_len=8192, global_batch_seqs=64), p, gpu, system, fabric, require_fit=False)
    off = pt.evaluate(Setup(model=m, seq_len=8192, global_batch_seqs=64, stack=get_stack("llama3-meta")), p,
                      gpu, system, fabric, require_fit=False)
    assert on.breakdown_dict["tp_comm"] == pytest.approx(off.breakdown_dict["tp_comm"] / 8, rel=1e-6)
    assert on.step_time_s < off.step_time_s


def test_exposed_context_parallel_gather():
    gpu, system, fabric = hw("h100")
    m = MODELS.get("llama3-70b")
    p = ParallelConfig(tp=8, pp=1, cp=4, dp=2, micro_batch=1, recompute="full", zero=3)
    base = Setup(model=m, seq_len=65536, global_batch_seqs=16)
    ring = pt.evaluate(base, p, gpu, system, fabric, require_fit=False).breakdown_dict["cp_comm"]
    gather = pt.evaluate(Setup(model=m, seq_len=65536, global_batch_seqs=16, stack=get_stack("llama3-meta")), p,
                         gpu, system, fabric, require_fit=False).breakdown_dict["cp_comm"]
    assert gather > ring >= 0 and gather > 0


def test_bf16_gradients_halve_gradient_memory_and_traffic():
    m = MODELS.get("llama3-8b")
    p = ParallelConfig(dp=8, zero=1, recompute="full")
    fp32 = memory_per_gpu(Setup(model=m, seq_len=4096, global_batch_seqs=64), p)
    bf16 = memory_per_gpu(Setup(model=m, seq_len=4096, global_batch_seqs=64, stack=get_stack("nemo")), p)
    assert bf16.gradients == pytest.approx(fp32.gradients / 2)


def test_dualpipe_bubble_memory_and_even_stages():
    gpu, system, fabric = hw("h800")
    m = MODELS.get("deepseek-v3")
    p = ParallelConfig(tp=1, pp=16, ep=64, dp=128, micro_batch=1, recompute="full", zero=1)
    dual = Setup(model=m, seq_len=4096, global_batch_seqs=15360, precision="fp8", stack=get_stack("deepseek-dualpipe"))
    plain = Setup(model=m, seq_len=4096, global_batch_seqs=15360, precision="fp8")
    a = pt.evaluate(dual, p, gpu, system, fabric, require_fit=False)
    b = pt.evaluate(plain, p, gpu, system, fabric, require_fit=False)
    assert a.breakdown_dict["pp_bubble"] < b.breakdown_dict["pp_bubble"] / 2
    assert a.breakdown_dict["ep_comm"] < b.breakdown_dict["ep_comm"] and a.breakdown_dict["pp_p2p"] == 0
    assert a.memory_dict["weights"] == pytest.approx(2 * b.memory_dict["weights"])
    with pytest.raises(InputError):
        pt.evaluate(dual, ParallelConfig(tp=1, pp=15, ep=64, dp=128), gpu, system, fabric)


def test_interleaving_with_fewer_micro_batches_than_stages():
    # flexible schedules (Llama 3's tunable N, breadth-first) run any number of micro-batches
    gpu, system, fabric = hw("h100")
    s = Setup(model=MODELS.get("llama3-70b"), seq_len=8192, global_batch_seqs=16)
    e = pt.evaluate(s, ParallelConfig(tp=8, pp=8, dp=2, vpp=2, recompute="full"), gpu, system, fabric)
    assert e.micro_batches == 8 and e.breakdown_dict["pp_bubble"] > 0


# ---------------------------------------------------------------------------
# fine-grained MoE: the non-GEMM work of small experts
# ---------------------------------------------------------------------------

QWEN30 = MODELS.get("qwen3-30b-a3b")     # 128 experts of 768, 8 active, hidden 2048


def _moe_ops(stack="nemo", ep=8, mb=2, precision="fp8", model=QWEN30):
    setup = Setup(model=model, seq_len=4096, global_batch_seqs=64, precision=precision, stack=get_stack(stack)
                  if isinstance(stack, str) else stack)
    p = ParallelConfig(tp=1, ep=ep, dp=8, micro_batch=mb, recompute="none")
    return {op.name: op for op in layer_work(model, True, setup, p).ops}, setup, p


def test_expert_gemms_have_their_real_per_expert_shape():
    ops, _, _ = _moe_ops(ep=8, mb=2)
    T, k, E, h, f = 2 * 4096, 8, 128, 2048, 768
    up = ops["experts_up"]
    # tokens per expert = local tokens x top-k / experts x EP (the EP group's tokens meet at each expert)
    assert up.m == T * k / E * 8 and (up.n, up.k) == (2 * f, h) and up.batch == E / 8
    # Transformer Engine: one GEMM launch per local expert, 4 streams share the SMs' waves
    assert up.launches == 16 and up.wave_group == 4 and up.after_sync
    fused = replace(get_stack("nemo"), expert_gemm_streams=0)
    ops_f, _, _ = _moe_ops(stack=fused)
    assert ops_f["experts_up"].launches == 1 and ops_f["experts_up"].wave_group == 0


def test_token_movement_bytes_scale_with_tokens_times_top_k_times_hidden():
    ops, _, _ = _moe_ops(ep=8, mb=2)
    routed, h = 2 * 4096 * 8, 2048
    assert ops["permute"].bytes == pytest.approx(4 * routed * h * 2) and ops["permute"].bwd == 1.0
    assert ops["sort_chunks"].bytes == pytest.approx(4 * routed * h * 2)
    # router: gating GEMM over the experts plus fp32 score traffic per token and expert
    assert ops["router"].n == 128
    assert ops["router_topk"].bytes == pytest.approx(20 * 2 * 4096 * 128)
    # twice the tokens, twice the bytes; a single local expert needs no re-sort
    ops2, _, _ = _moe_ops(ep=8, mb=4)
    assert ops2["permute"].bytes == pytest.approx(2 * ops["permute"].bytes)
    one, _, _ = _moe_ops(ep=128, mb=2)
    assert "sort_chunks" not in one


def test_per_expert_launches_cost_when_they_follow_the_dropless_sync():
    gpu = hw("h100")[0]
    ops, setup, p = _moe_ops()
    w = layer_work(QWEN30, True, setup, p)
    nemo = pt.time_layer(w, gpu, "fp8", "none")
    quiet = replace(get_stack("nemo"), moe_host_sync=False)
    w2 = layer_work(QWEN30, True, Setup(model=QWEN30, seq_len=4096, global_batch_seqs=64, precision="fp8",
                                        stack=quiet), p)
    hidden = pt.time_layer(w2, gpu, "fp8", "none")
    # per forward: 2 expert GEMMs + 2 FP8 casts per local expert; backward: 4 GEMMs + 2 casts
    n = 16
    per_launch = pt.EXPERT_LAUNCH_S - pt.KERNEL_GAP_S
    assert nemo.fwd - hidden.fwd == pytest.approx(4 * n * per_launch + pt.MOE_SYNC_S, rel=1e-9)
    assert nemo.bwd - hidden.bwd == pytest.approx(6 * n * per_launch, rel=1e-9)
    assert w.host_syncs_fwd == 1 and w2.host_syncs_fwd == 0


def test_more_local_experts_cost_more_at_the_same_tokens():
    gpu = hw("h100")[0]
    times = []
    for ep in (32, 16, 8):            # 4, 8, 16 local experts, same routed tokens per GPU
        ops, setup, p = _moe_ops(ep=ep)
        lt = pt.time_layer(layer_work(QWEN30, True, setup, p), gpu, "fp8", "none")
        times.append(lt.fwd + lt.bwd)
    assert times[0] < times[1] < times[2]
    # the same work as one grouped kernel per GEMM saves (most of) the 10
    # per-expert launches of each of the 16 local experts
    fused = replace(get_stack("nemo"), expert_gemm_streams=0, moe_host_sync=False)
    ops, setup, p = _moe_ops(stack=fused, ep=8)
    lt = pt.time_layer(layer_work(QWEN30, True, setup, p), gpu, "fp8", "none")
    assert times[2] - (lt.fwd + lt.bwd) > 0.9 * 16 * 10 * pt.EXPERT_LAUNCH_S


def test_tiny_experts_waste_their_tiles():
    assert pt.tile_padding(4096) == 1.0
    assert pt.tile_padding(16) == pytest.approx(0.25)
    assert pt.tile_padding(100) == pytest.approx(100 / 128)
    gpu = hw("h100")[0]
    from workloads.training import Op
    big = Op("e", "gemm", flops=2 * 64 * 768 * 2048, m=64, n=768, k=2048)
    small = Op("e", "gemm", flops=2 * 16 * 768 * 2048, m=16, n=768, k=2048)
    # a quarter of the rows takes nearly as long: the padded tile computes 64 rows
    # either way and the expert's weights are read in full
    assert pt.gemm_math_time(small, gpu, "bf16") > 0.9 * pt.gemm_math_time(big, gpu, "bf16")


def test_dense_layers_do_not_change_with_the_moe_stack_fields():
    gpu = hw("h100")[0]
    m = MODELS.get("llama3-8b")
    p = ParallelConfig(tp=2, dp=4, recompute="selective")
    a = Setup(model=m, seq_len=4096, global_batch_seqs=8)
    b = Setup(model=m, seq_len=4096, global_batch_seqs=8,
              stack=replace(get_stack("modern"), expert_gemm_streams=0, moe_host_sync=False))
    ta = pt.time_layer(layer_work(m, False, a, p), gpu, "bf16", "selective")
    tb = pt.time_layer(layer_work(m, False, b, p), gpu, "bf16", "selective")
    assert ta == tb


def test_a_stage_without_layers_under_full_recompute():
    # a model with no dense layers, the first stage holding only the embedding
    s = Setup(model=QWEN30, seq_len=4096, global_batch_seqs=64)
    p = ParallelConfig(tp=1, pp=4, ep=8, dp=8, recompute="full")
    mem = memory_per_gpu(s, p, stages=(0, 16, 16))
    assert mem.activations > 0 and mem.stage in ("first", "second", "last")


# ---------------------------------------------------------------------------
# MoE memory, per tensor: gpt-oss-120b (config.json: 36 layers, hidden 2880,
# 64 query / 8 KV heads of 64, 128 experts of 2880, top-4, vocab 201,088)
# ---------------------------------------------------------------------------

GIB = 2**30


def _gpt_oss_stage0(micro_batch):
    """First stage of Megatron-Bridge's H100 layout (TP1 PP4 EP8, 64 GPUs,
    GBS 512, 4K sequences, bf16 gradients, ZeRO-1, no recompute): bytes
    written out from the architecture, independent of the model code."""
    h, q, kv, o, heads, E, k, efn, V = 2880, 64 * 64, 2 * 8 * 64, 64 * 64, 64, 128, 4, 2880, 201088
    layers, ep, dp, edp = 9, 8, 16, 2            # 36 / PP4; expert DP = 64 / (PP4 x EP8)
    dense = layers * (h * (q + kv) + o * h + h * E) + V * h      # attention, router, embedding
    experts = layers * (E // ep) * 3 * h * efn                   # 16 local gated experts
    T = micro_batch * 4096
    per_token = (2 * h + 2 * h + 2 * (q + kv) + 2 * o + 4 * heads     # norm in/out, Q K V, O, log-sum-exp
                 + 2 * h + 2 * h                                       # MLP norm in / router input
                 + k * (2 * h + 2 * 2 * efn + 2 * efn))                # per routed token: FC1 in, FC1 out, FC2 in
    act = 4 * layers * T * per_token             # 1F1B: stage 0 holds pp = 4 micro-batches
    return dict(weights=2 * (dense + experts), gradients=2 * (dense + experts),
                optimizer=12 * (dense / dp + experts / edp), activations=act)


def test_gpt_oss_120b_h100_recipe_layout_fits_without_recompute():
    m = MODELS.get("gpt-oss-120b")
    s = Setup(model=m, seq_len=4096, global_batch_seqs=512, stack=get_stack("nemo"))
    # the v0.2.0 H100 preset's micro-batch of 1 (also the 26.02 table's)
    mem = memory_per_gpu(s, ParallelConfig(tp=1, pp=4, ep=8, dp=16, micro_batch=1, recompute="none", zero=1))
    want = _gpt_oss_stage0(1)
    assert mem.stage == "first" and mem.logits == 0.0
    for key, value in want.items():
        assert getattr(mem, key) == pytest.approx(value, rel=0.01), key
    assert 8 * GIB < mem.weights < 9 * GIB and 19 * GIB < mem.optimizer < 22 * GIB
    assert 17 * GIB < mem.activations < 20 * GIB
    assert mem.total < CAT.gpu("h100").hbm_bytes
    # the 25.11 table's MBS 4 with no recompute cannot fit in 80 GB: the
    # stored expert activations alone (4 routed copies of FC1 in, FC1 out,
    # FC2 in per token) plus the states exceed it
    four = memory_per_gpu(s, ParallelConfig(tp=1, pp=4, ep=8, dp=16, micro_batch=4, recompute="none", zero=1))
    w4 = _gpt_oss_stage0(4)
    expert_act = 4 * 9 * 4 * 4096 * 4 * (2 * 2880 + 6 * 2880)
    assert w4["weights"] + w4["gradients"] + w4["optimizer"] + expert_act > 80 * GIB
    assert four.activations == pytest.approx(w4["activations"], rel=0.01)
    assert four.total > CAT.gpu("h100").hbm_bytes


def test_gpt_oss_120b_b200_recipe_layout_fits_and_logits_sit_on_the_one_stage():
    m = MODELS.get("gpt-oss-120b")
    s = Setup(model=m, seq_len=4096, global_batch_seqs=512, stack=get_stack("nemo"))
    # the v0.2.0 B200 preset: TP1 PP1 EP64 MBS4, no recompute
    mem = memory_per_gpu(s, ParallelConfig(tp=1, pp=1, ep=64, dp=64, micro_batch=4, recompute="none", zero=1))
    assert mem.stage == "only"
    # bf16 logits and their fp32 copy for the cross-entropy, one micro-batch
    assert mem.logits == pytest.approx(6 * 4 * 4096 * 201088)
    assert mem.total < CAT.gpu("b200").hbm_bytes


def test_moe_with_expert_tensor_parallelism_stores_every_routed_token():
    """ep = 1 splits each expert over TP: the routed tokens are all-gathered
    over the TP group, so each rank stores all T x k of them at full width
    as the first expert GEMM's input, and 1/tp of the expert-FFN tensors."""
    m = build_model("moe-test", dict(layers=4, hidden=1024, heads=8, kv_heads=8, ffn=1024, vocab=32000,
                                     experts=8, active_experts=2, expert_ffn=512))
    s = Setup(model=m, seq_len=2048, global_batch_seqs=8)
    h, efn, k, t, T = 1024, 512, 2, 2, 2048
    w = layer_work(m, True, s, ParallelConfig(tp=t, ep=1, recompute="none"))
    attn = T * (2 * h / t + 2 * h / t + 2 * (h + 2 * h) / t + 2 * h / t) + 4 * T * 8 / t
    mlp = T * 4 * h / t + T * k / t * (2 * 2 * efn + 2 * efn) + T * k * 2 * h
    assert w.act_bytes == pytest.approx(attn + mlp)
    # with ep > 1 (expert TP 1) each rank stores only its own tokens' routes
    w_ep = layer_work(m, True, s, ParallelConfig(tp=t, ep=2, dp=1, recompute="none"))
    assert w_ep.act_bytes == pytest.approx(attn + T * 4 * h / t + T * k / t * (2 * h + 6 * efn))
