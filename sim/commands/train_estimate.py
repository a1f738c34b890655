"""`gpusim train-estimate`: step time, throughput, MFU, memory and run cost
of training (or fine-tuning) a model on N GPUs, for a given layout or the
fastest layout that fits."""
from __future__ import annotations

import json

from hardware.perf_training import evaluate, search, training_time_s, typical_system, DEFAULT_BATCH_TOKENS
from sim.catalogs import load_catalogs
from workloads.errors import InputError
from workloads.models import build_model
from workloads.training import KINDS, RECOMPUTE, STACKS, ParallelConfig, Setup, check_parallel, get_stack
from workloads.units import format_duration, parse_count, positive

NAME = "train-estimate"
HELP = "step time, tokens/s, MFU and memory of a training job; --search for the best layout"
DESCRIPTION = (
    "Estimate one training or fine-tuning job from first principles: the model's work per step "
    "on the GPU's tensor cores and HBM, tensor/pipeline/context/expert/data-parallel communication on "
    "the system's NVLink domain and fabric, pipeline bubble, memory per GPU. Layout flags that are "
    "given are kept; the rest is searched (fastest layout that fits). DP is derived: "
    "gpus / (tp x pp x cp). MFU counts model FLOPs (no recompute) over dense BF16 peak.")

_ARCH_FLAGS = (("layers", int), ("hidden", int), ("heads", int), ("kv_heads", int), ("ffn", int), ("vocab", int),
               ("experts", int), ("active_experts", int), ("shared_experts", int), ("expert_ffn", int),
               ("dense_layers", int), ("head_dim", int), ("max_seq", int))
GIB = 2**30


def add_arguments(p):
    g = p.add_argument_group("model")
    g.add_argument("--model", help="catalog model (e.g. llama3-70b), or the name of a custom one built from the flags below")
    for name, _ in _ARCH_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=int, default=None, metavar="N",
                       help=f"custom architecture: {name.replace('_', ' ')}")
    g.add_argument("--gated", choices=("true", "false"), default=None, help="custom architecture: SwiGLU (true) or GELU MLP")
    h = p.add_argument_group("hardware")
    h.add_argument("--gpu", help="GPU name (uses its typical system, e.g. h100 -> dgx-h100)")
    h.add_argument("--system", help="system name (e.g. dgx-h100, gb200-nvl72)")
    h.add_argument("--gpus", required=False, help="number of GPUs (e.g. 1024, 16k)")
    h.add_argument("--fabric", help="scale-out fabric (default: the system's)")
    h.add_argument("--oversubscription", type=float, default=1.0, help="fabric oversubscription crossed (default 1)")
    h.add_argument("--catalog", help="YAML file with extra or changed GPUs, systems, fabrics, models")
    l = p.add_argument_group("layout (given values are kept, the rest is searched)")
    for flag in ("tp", "pp", "cp", "ep", "vpp"):
        l.add_argument("--" + flag, type=int, default=None, metavar="N")
    l.add_argument("--micro-batch", type=int, default=None, metavar="N", help="sequences per micro-batch")
    l.add_argument("--recompute", choices=RECOMPUTE, default=None, help="activation recomputation")
    l.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=None, help="ZeRO stage (3 = FSDP)")
    l.add_argument("--search", action="store_true", help="show the fastest few layouts")
    l.add_argument("--top", type=int, default=5, help="how many layouts --search shows (default 5)")
    w = p.add_argument_group("job")
    w.add_argument("--seq-len", default="4096", help="sequence length in tokens (default 4096)")
    w.add_argument("--global-batch-tokens", default=None,
                   help=f"tokens per optimizer step (default {DEFAULT_BATCH_TOKENS / 2**20:.0f}M for pretraining, 1M for fine-tuning)")
    w.add_argument("--precision", choices=("bf16", "fp16", "fp8"), default="bf16", help="matrix-multiply precision")
    w.add_argument("--kind", choices=KINDS, default="pretrain", help="pretrain, sft (full fine-tuning) or lora")
    w.add_argument("--lora-rank", type=int, default=16, help="LoRA adapter rank (default 16)")
    w.add_argument("--doc-tokens", default=None, help="average document length (packed documents attend only within themselves)")
    w.add_argument("--no-packing", action="store_true", help="one document per sequence, padded to --seq-len")
    w.add_argument("--stack", choices=sorted(STACKS), default="modern", help="training framework features (default modern)")
    w.add_argument("--tokens", default=None, help="tokens to train on (e.g. 15T): adds run time and GPU-hours")
    o = p.add_argument_group("output")
    o.add_argument("--explain", action="store_true", help="show the step-time and memory breakdown")
    o.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _model(args, cats):
    fields = {name: getattr(args, name) for name, _ in _ARCH_FLAGS if getattr(args, name) is not None}
    if args.gated is not None:
        fields["gated"] = args.gated == "true"
    if args.model and args.model in cats.models and not fields:
        return cats.models.get(args.model, "--model")
    if args.model and args.model in cats.models:
        return build_model(args.model, fields, cats.models.get(args.model), "command line")
    if not fields:
        if args.model:
            cats.models.get(args.model, "--model")   # raises with suggestions
        raise InputError("no model given", "--model", "name a catalog model (e.g. --model llama3-70b) or give --layers --hidden ...")
    need = [f for f in ("layers", "hidden", "heads", "ffn", "vocab") if f not in fields]
    if need:
        raise InputError(f"a custom architecture needs --{need[0]}", "command line",
                         "give --layers --hidden --heads --ffn --vocab (and --kv-heads, MoE flags as needed)")
    return build_model(args.model or "custom", fields, None, "command line")


def _hardware(args, cats):
    hw = cats.hardware
    if args.system:
        system = hw.system(args.system, "--system")
        gpu = hw.gpu(args.gpu, "--gpu") if args.gpu else hw.system_gpu(system)
        if args.gpu and gpu.name != system.gpu:
            system = system.model_copy(update={"gpu": gpu.name})
    elif args.gpu:
        gpu, system = typical_system(hw, args.gpu, "--gpu")
    else:
        raise InputError("no GPU given", "--gpu", "give --gpu (e.g. h100) or --system (e.g. dgx-h100)")
    fabric = hw.fabric(args.fabric or system.fabric, "--fabric" if args.fabric else f"systems.{system.name}.fabric")
    return gpu, system, fabric


def _int(raw, field):
    v = parse_count(raw, field)
    if v != int(v):
        raise InputError(f"{field} is {raw!r}, not a whole number", field, "give a whole number")
    return int(positive(v, field))


def build(args):
    """(setup, gpu, system, fabric, gpus, fixed) from the parsed flags."""
    cats = load_catalogs(args.catalog)
    model = _model(args, cats)
    gpu, system, fabric = _hardware(args, cats)
    if args.gpus is None:
        raise InputError("no GPU count given", "--gpus", "give --gpus N (e.g. --gpus 1024)")
    gpus = _int(args.gpus, "--gpus")
    seq = _int(args.seq_len, "--seq-len")
    if args.oversubscription < 1:
        raise InputError(f"oversubscription {args.oversubscription:g} is below 1", "--oversubscription", "use 1 (non-blocking) or more")
    if args.global_batch_tokens is not None:
        batch = positive(parse_count(args.global_batch_tokens, "--global-batch-tokens"), "--global-batch-tokens")
    else:
        batch = DEFAULT_BATCH_TOKENS if args.kind == "pretrain" else 2**20
    if batch < seq:
        raise InputError(f"global batch of {batch:g} tokens is shorter than one {seq}-token sequence",
                         "--global-batch-tokens", "give at least one sequence per step")
    doc = _int(args.doc_tokens, "--doc-tokens") if args.doc_tokens is not None else None
    precision = "bf16" if args.precision == "fp16" else args.precision
    setup = Setup(model=model, seq_len=seq, global_batch_seqs=max(1, round(batch / seq)), precision=precision,
                  kind=args.kind, lora_rank=args.lora_rank, doc_tokens=doc, packing=not args.no_packing,
                  stack=get_stack(args.stack, "--stack"))
    fixed = {k: getattr(args, k) for k in ("tp", "pp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero")
             if getattr(args, k) is not None}
    _check_fixed(model, fixed, gpus, system)
    return setup, gpu, system, fabric, gpus, fixed


def _check_fixed(model, fixed, gpus, system):
    """Input errors for layouts that cannot exist, each saying why."""
    for k, v in fixed.items():
        if isinstance(v, int) and k != "zero" and v < 1:
            raise InputError(f"--{k.replace('_', '-')} is {v}", f"--{k.replace('_', '-')}", "use an integer >= 1")
    tp, pp, cp = fixed.get("tp", 1), fixed.get("pp", 1), fixed.get("cp", 1)
    if gpus % (tp * pp * cp):
        raise InputError(f"tp x pp x cp = {tp}x{pp}x{cp} = {tp * pp * cp} does not divide {gpus} GPUs", "--gpus",
                         "DP is gpus / (tp x pp x cp): choose sizes whose product divides the GPU count")
    if all(k in fixed for k in ("tp", "pp", "cp")):
        dp = gpus // (tp * pp * cp)
        check_parallel(model, ParallelConfig(tp=tp, pp=pp, cp=cp, ep=fixed.get("ep", 1), dp=dp,
                                             micro_batch=fixed.get("micro_batch", 1), vpp=fixed.get("vpp", 1)),
                       gpus, system.nvlink_domain_gpus)
    else:
        if model.heads % tp:
            raise InputError(f"tp={tp} does not divide the {model.heads} attention heads", "--tp",
                             "use a tp that divides the head count")
        if tp > system.nvlink_domain_gpus:
            raise InputError(f"tp={tp} is larger than the {system.nvlink_domain_gpus}-GPU NVLink domain", "--tp",
                             f"use tp <= {system.nvlink_domain_gpus}")
        if pp > model.layers:
            raise InputError(f"pp={pp} exceeds the {model.layers} layers", "--pp", "use pp <= layers")
        ep = fixed.get("ep", 1)
        if ep > 1 and not model.is_moe:
            raise InputError(f"ep={ep} but {model.name} has no experts", "--ep", "use ep=1 for a dense model")
        if ep > 1 and model.experts % ep:
            raise InputError(f"ep={ep} does not divide the {model.experts} experts", "--ep",
                             "use an ep that divides the expert count")
        if ep > 1 and (gpus // (tp * pp * cp) * tp) % ep and "tp" in fixed and "pp" in fixed:
            raise InputError(f"ep={ep} does not divide dp x tp", "--ep", "use an ep dividing dp x tp")


def estimate(args):
    """(best estimate, alternatives, setup, hardware) for the parsed flags."""
    setup, gpu, system, fabric, gpus, fixed = build(args)
    complete = all(k in fixed for k in ("tp", "pp", "cp", "micro_batch", "recompute", "zero")) and \
        ("ep" in fixed or not setup.model.is_moe)
    if complete and not args.search:
        dp = gpus // (fixed["tp"] * fixed["pp"] * fixed["cp"])
        p = ParallelConfig(tp=fixed["tp"], pp=fixed["pp"], cp=fixed["cp"], ep=fixed.get("ep", 1), dp=dp,
                           micro_batch=fixed["micro_batch"], vpp=fixed.get("vpp", 1),
                           sp=setup.stack.sequence_parallel and fixed["tp"] > 1,
                           recompute=fixed["recompute"], zero=fixed["zero"])
        best = evaluate(setup, p, gpu, system, fabric, args.oversubscription)
        return best, [best], setup, (gpu, system, fabric)
    results = search(setup, gpu, system, fabric, gpus, args.oversubscription, top=max(1, args.top), fixed=fixed)
    return results[0], results, setup, (gpu, system, fabric)


def _fmt_tokens(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def _layout(p) -> str:
    return (f"tp {p.tp}  pp {p.pp}  cp {p.cp}  ep {p.ep}  dp {p.dp}  micro-batch {p.micro_batch}  "
            f"vpp {p.vpp}  recompute {p.recompute}  zero {p.zero}")


def result_dict(best, alts, setup, hw, tokens=None, searched=False) -> dict:
    gpu, system, fabric = hw
    d = best.as_dict()
    d["model"] = setup.model.name
    d["gpu"], d["system"], d["fabric"] = gpu.name, system.name, fabric.name
    d["stack"] = next((k for k, v in STACKS.items() if v == setup.stack), "custom")
    if tokens is not None:
        secs = training_time_s(best, tokens)
        d["tokens"] = tokens
        d["train_time_s"] = secs
        d["days"] = secs / 86400.0
        d["gpu_hours"] = secs * best.gpus / 3600.0
    if searched:
        d["alternatives"] = [{"step_time_s": e.step_time_s, "mfu": e.mfu, "tokens_per_s": e.tokens_per_s,
                              "memory_per_gpu_bytes": e.memory_per_gpu_bytes, "parallelism": e.parallelism.as_dict()}
                             for e in alts]
    return d


def run(args) -> int:
    if args.top < 1:
        raise InputError(f"--top is {args.top}", "--top", "show at least 1 layout")
    tokens = positive(parse_count(args.tokens, "--tokens"), "--tokens") if args.tokens is not None else None
    best, alts, setup, hw = estimate(args)
    if args.json:
        print(json.dumps(result_dict(best, alts, setup, hw, tokens, args.search)))
        return 0
    gpu, system, fabric = hw
    p = best.parallelism
    print(f"{setup.model.name} on {best.gpus} x {gpu.name} ({system.name}, {fabric.name}), {setup.precision}, "
          f"{setup.kind}, stack {args.stack}")
    print(f"batch       {best.global_batch_seqs} x {setup.seq_len} = {_fmt_tokens(best.global_batch_seqs * setup.seq_len)} "
          f"tokens per step, {best.micro_batches} micro-batches per pipeline")
    print(f"layout      {_layout(p)}")
    print(f"step time   {best.step_time_s:.3f} s")
    print(f"throughput  {_fmt_tokens(best.tokens_per_s)} tokens/s ({best.tokens_per_s / best.gpus:,.0f} per GPU)")
    print(f"MFU         {best.mfu * 100:.1f}%  (model {best.model_tflops_per_gpu:.0f} TFLOP/s/GPU, "
          f"hardware {best.hw_tflops_per_gpu:.0f} TFLOP/s/GPU incl. recompute)")
    print(f"memory      {best.memory_per_gpu_bytes / GIB:.1f} GiB of {best.memory_capacity_bytes / GIB:.1f} GiB per GPU")
    if tokens is not None:
        secs = training_time_s(best, tokens)
        print(f"run         {_fmt_tokens(tokens)} tokens: {format_duration(secs)} ({secs / 86400:.1f} days), "
              f"{secs * best.gpus / 3600:,.0f} GPU-hours (steady state, no failures)")
    if args.explain:
        print()
        print(f"{'step time':24s} {'seconds':>10s} {'share':>7s}")
        for name, secs in best.breakdown:
            print(f"{name:24s} {secs:10.4f} {secs / best.step_time_s * 100:6.1f}%")
        print(f"{'total':24s} {best.step_time_s:10.4f} {100.0:6.1f}%")
        print()
        print(f"{'memory per GPU':24s} {'GiB':>10s}")
        for name, b in best.memory:
            print(f"{name:24s} {b / GIB:10.2f}")
    if args.search and len(alts) > 1:
        print()
        print(f"{'#':>2s} {'step s':>9s} {'MFU':>6s} {'GiB':>6s}  layout")
        for i, e in enumerate(alts, 1):
            print(f"{i:2d} {e.step_time_s:9.3f} {e.mfu * 100:5.1f}% {e.memory_per_gpu_bytes / GIB:6.1f}  {_layout(e.parallelism)}")
    return 0
