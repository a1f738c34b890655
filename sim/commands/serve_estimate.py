"""`gpusim serve-estimate`: what a serving replica of a model delivers on a
given GPU and layout: throughput, TTFT, TPOT, batch and memory, offline
(all requests queued) or under TTFT/TPOT SLOs."""
from __future__ import annotations

import json

from hardware.perf_serving import SERVING_PRECISIONS, best_layout, default_system, memory_plan
from sim.catalogs import load_catalogs
from workloads.errors import InputError
from workloads.units import parse_count, parse_duration

NAME = "serve-estimate"
HELP = "throughput and latency of a model served on GPUs (offline or under SLOs)"
DESCRIPTION = (
    "Estimate what serving MODEL on GPUs delivers: output tokens/s, requests/s, time to first token (TTFT), "
    "time per output token (TPOT), batch size, KV cache and memory per GPU. Without SLOs: maximum throughput "
    "with all requests queued (offline, as trtllm-bench and MLPerf offline measure it). With --ttft-slo/"
    "--tpot-slo: the best throughput meeting them. --gpus GPUs are split into replicas of tp x pp; without "
    "--tp the best layout is searched. Throughput figures are for all --gpus GPUs.")


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="model name from the catalog (gpusim catalog models)")
    parser.add_argument("--gpu", help="GPU name (h100, h200, b200, ...); default: the --system's GPU")
    parser.add_argument("--system", help="system name (dgx-h100, gb200-nvl72, ...); default: the first with --gpu")
    parser.add_argument("--gpus", help="GPUs in all (default: tp x pp, or one node when --tp is not given)")
    parser.add_argument("--tp", type=int, help="tensor-parallel GPUs per replica (default: searched)")
    parser.add_argument("--pp", type=int, help="pipeline stages per replica (default: searched)")
    parser.add_argument("--ep", type=int, help="expert-parallel GPUs (MoE; divides tp; default: searched)")
    parser.add_argument("--attention-dp", action="store_true",
                        help="run attention data-parallel over the tp GPUs (MoE engines' throughput mode)")
    parser.add_argument("--precision", default="fp8", choices=SERVING_PRECISIONS, help="weight precision (default fp8)")
    parser.add_argument("--kv-precision", choices=SERVING_PRECISIONS,
                        help="KV-cache precision (default: fp8 for fp8/fp4 weights, else the weights')")
    parser.add_argument("--input-tokens", required=True, help="prompt tokens per request (e.g. 1000, 8k)")
    parser.add_argument("--output-tokens", required=True, help="generated tokens per answer (e.g. 300, 4k)")
    parser.add_argument("--samples", type=int, default=1,
                        help="answers per request sharing the prompt's KV (best-of-n; default 1)")
    parser.add_argument("--max-batch", type=int, help="most sequences an engine batches (default 2048)")
    parser.add_argument("--max-num-tokens", type=int, default=8192,
                        help="chunked-prefill token budget per iteration (default 8192)")
    parser.add_argument("--ttft-slo", help="time-to-first-token limit (e.g. 2s, 500ms)")
    parser.add_argument("--tpot-slo", help="time-per-output-token limit (e.g. 200ms)")
    parser.add_argument("--catalog", help="YAML file with extra or changed GPUs, systems, fabrics, models")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _whole(raw, flag: str) -> int:
    v = parse_count(raw, flag)
    if v != int(v) or v < 1:
        raise InputError(f"{flag} must be a whole number >= 1, got {raw!r}", flag, "give e.g. 1000 or 8k")
    return int(v)


def _positive_int(v, flag: str):
    if v is not None and v < 1:
        raise InputError(f"{flag} must be >= 1, got {v}", flag, f"give {flag} 1 or more")
    return v


def estimate_from_args(args) -> dict:
    """The serve-estimate result as a plain dict (what --json prints)."""
    cats = load_catalogs(args.catalog)
    hw = cats.hardware
    model = cats.models.get(args.model, "--model")
    if args.system:
        system = hw.system(args.system, "--system")
        gpu = hw.system_gpu(system)
        if args.gpu and args.gpu != gpu.name:
            raise InputError(f"system {system.name!r} is built from {gpu.name!r}, not {args.gpu!r}", "--gpu",
                             f"drop --gpu or give --gpu {gpu.name}")
    elif args.gpu:
        gpu = hw.gpu(args.gpu, "--gpu")
        system = default_system(hw, gpu.name)
    else:
        raise InputError("give --gpu or --system", "gpusim serve-estimate", "e.g. --gpu h100")
    fabric = hw.fabric(system.fabric, f"systems.{system.name}.fabric")
    for flag, v in (("--tp", args.tp), ("--pp", args.pp), ("--ep", args.ep), ("--samples", args.samples),
                    ("--max-batch", args.max_batch), ("--max-num-tokens", args.max_num_tokens)):
        _positive_int(v, flag)
    if args.gpus is not None:
        gpus = _whole(args.gpus, "--gpus")
    elif args.tp:
        gpus = args.tp * (args.pp or 1)
    else:
        gpus = system.gpus_per_node
    inp = _whole(args.input_tokens, "--input-tokens")
    out = _whole(args.output_tokens, "--output-tokens")
    ttft = parse_duration(args.ttft_slo, "--ttft-slo") if args.ttft_slo is not None else None
    tpot = parse_duration(args.tpot_slo, "--tpot-slo") if args.tpot_slo is not None else None
    cfg, est, replicas = best_layout(
        model, gpu, system, fabric, gpus, args.precision, inp, out, ttft_slo=ttft, tpot_slo=tpot,
        samples=args.samples, tp=args.tp, pp=args.pp, ep=args.ep,
        attention_dp=True if args.attention_dp else None, kv_precision=args.kv_precision,
        max_batch=args.max_batch, max_num_tokens=args.max_num_tokens)
    plan = memory_plan(cfg)
    return {
        "model": model.name, "gpu": gpu.name, "system": system.name, "gpus": gpus,
        "replicas": replicas, "tp": cfg.tp, "pp": cfg.pp, "ep": cfg.ep, "attention_dp": cfg.attention_dp,
        "precision": cfg.precision, "kv_precision": cfg.kv_prec,
        "input_tokens": inp, "output_tokens": out, "samples": args.samples,
        "ttft_slo_s": ttft, "tpot_slo_s": tpot, "mode": "slo" if (ttft or tpot) else "offline",
        "output_tokens_per_s": est.output_tokens_per_s * replicas,
        "requests_per_s": est.requests_per_s * replicas,
        "input_tokens_per_s": est.input_tokens_per_s * replicas,
        "output_tokens_per_s_per_gpu": est.output_tokens_per_s / (cfg.tp * cfg.pp),
        "replica_output_tokens_per_s": est.output_tokens_per_s,
        "ttft_s": est.ttft_s, "tpot_s": est.tpot_s, "e2e_latency_s": est.e2e_latency_s,
        "batch_size": est.batch_size, "batch_size_total": est.batch_size * replicas,
        "iteration_s": est.iteration_s, "limited_by": est.limited_by,
        "kv_cache_bytes": est.kv_cache_bytes, "kv_pool_bytes": plan.kv_cache_bytes,
        "kv_capacity_tokens": plan.kv_capacity_tokens,
        "weights_bytes_per_gpu": plan.weights_bytes_per_gpu, "memory_per_gpu_bytes": plan.memory_per_gpu_bytes,
        "capacity_per_gpu_bytes": plan.capacity_per_gpu_bytes,
        "breakdown_s": est.breakdown,
    }


def _human(r: dict) -> str:
    gib = 2**30
    layout = f"{r['replicas']} x (tp {r['tp']}, pp {r['pp']}" + (f", ep {r['ep']}" if r["ep"] > 1 else "") + (
        ", attention dp" if r["attention_dp"] else "") + ")"
    slo = "offline (all requests queued)" if r["mode"] == "offline" else (
        "under SLOs: " + ", ".join(x for x in (
            f"TTFT <= {r['ttft_slo_s']:g} s" if r["ttft_slo_s"] else "",
            f"TPOT <= {r['tpot_slo_s'] * 1e3:g} ms" if r["tpot_slo_s"] else "") if x))
    lines = [
        ("model", f"{r['model']} at {r['precision']} (KV cache {r['kv_precision']})"),
        ("hardware", f"{r['gpus']} x {r['gpu']} ({r['system']})"),
        ("layout", layout),
        ("requests", f"{r['input_tokens']} in / {r['output_tokens']} out" + (
            f" x {r['samples']} samples" if r["samples"] > 1 else "")),
        ("mode", slo),
        ("output tokens/s", f"{r['output_tokens_per_s']:,.0f}  ({r['output_tokens_per_s_per_gpu']:,.0f} per GPU)"),
        ("requests/s", f"{r['requests_per_s']:,.2f}"),
        ("TTFT", f"{r['ttft_s'] * 1e3:,.0f} ms"),
        ("TPOT", f"{r['tpot_s'] * 1e3:,.1f} ms"),
        ("batch per replica", f"{r['batch_size']} sequences (limited by {r['limited_by'].replace('_', ' ')})"),
        ("KV cache in use", f"{r['kv_cache_bytes'] / gib:,.1f} GiB per replica (pool {r['kv_pool_bytes'] / gib:,.1f} GiB)"),
        ("memory per GPU", f"{r['memory_per_gpu_bytes'] / gib:,.1f} of {r['capacity_per_gpu_bytes'] / gib:,.1f} GiB "
                           f"(weights {r['weights_bytes_per_gpu'] / gib:,.1f} GiB)"),
        ("iteration", f"{r['iteration_s'] * 1e3:,.1f} ms: " + ", ".join(
            f"{k.removesuffix('_s').replace('_', ' ')} {v * 1e3:.1f}" for k, v in r["breakdown_s"].items()
            if v > 0 and not k.endswith(("compute_s", "memory_s")))),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def run(args) -> int:
    result = estimate_from_args(args)
    if args.json:
        print(json.dumps(result, sort_keys=False))
    else:
        print(_human(result))
    return 0
