"""`gpusim scaling-law`: size a pretraining run by the scaling laws.

Give a compute budget (compute-optimal params and tokens), a parameter
count or a catalog model (compute-optimal tokens), a token count
(compute-optimal params), or params and tokens together (their compute).
Prints params, tokens, compute (6ND and with attention), Chinchilla loss
and the Llama-like architecture such a model would have.
"""
from __future__ import annotations

import json

from workloads.errors import InputError
from workloads.units import parse_count
from workloads import scaling_laws as sl

NAME = "scaling-law"
HELP = "compute-optimal params/tokens/compute and loss (Chinchilla)"
DESCRIPTION = ("Size a pretraining run: C ~= 6ND, Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta. "
               "--compute alone gives the compute-optimal params and tokens (rule 'chinchilla': about 20 "
               "tokens per parameter; rule 'fit': the fit's closed-form optimum); --params or --model "
               "alone gives the optimal tokens; --tokens alone the optimal params; two of them give the third.")


def add_arguments(parser):
    parser.add_argument("--compute", help="training FLOPs, e.g. 1e24 or 3.8e25")
    parser.add_argument("--params", help="parameters, e.g. 70B")
    parser.add_argument("--tokens", help="training tokens, e.g. 15T")
    parser.add_argument("--model", help="a catalog model (its parameter count)")
    parser.add_argument("--fit", default="chinchilla", choices=sorted(sl.FITS),
                        help="loss fit: chinchilla (Hoffmann et al. 2022) or epoch (Besiroglu et al. 2024 refit)")
    parser.add_argument("--rule", default="chinchilla", choices=list(sl.RULES),
                        help="compute-optimal rule: chinchilla (20 tokens/param) or fit (the fit's optimum)")
    parser.add_argument("--seq-len", type=int, default=8192, help="sequence length for the attention FLOPs (default 8192)")
    parser.add_argument("--catalog", help="YAML file with extra models")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _count(raw, flag):
    return None if raw is None else parse_count(raw, flag)


def compute(args) -> dict:
    """The answer as a dict (also what --json prints)."""
    if args.seq_len is not None and args.seq_len <= 0:
        raise InputError(f"--seq-len must be > 0, got {args.seq_len}", "--seq-len", "give e.g. 8192")
    c, n, d = _count(args.compute, "--compute"), _count(args.params, "--params"), _count(args.tokens, "--tokens")
    model = None
    if args.model:
        if n is not None:
            raise InputError("--model and --params both give the parameter count", "--model", "give only one")
        from sim.catalogs import load_catalogs
        model = load_catalogs(args.catalog).models.get(args.model, "--model")
        n = model.params_total
    if c is None and n is None and d is None:
        raise InputError("nothing to size", "gpusim scaling-law", "give --compute, --params, --tokens or --model")
    out = sl.solve(compute=c, params=n, tokens=d, rule=args.rule, fit=args.fit)
    if model is None:
        model = sl.model_for_params(out["params"], seq_len=args.seq_len)
    out["compute_with_attention"] = sl.training_flops_full(model, out["tokens"], args.seq_len)
    if model.is_moe:
        out["note"] = ("mixture of experts: the loss law and 6ND use all parameters; a token only "
                       "touches the active ones, which compute_with_attention counts")
    out["seq_len"] = args.seq_len
    out["fits"] = {name: f.loss(out["params"], out["tokens"]) for name, f in sl.FITS.items()}
    out["model"] = {"name": model.name, "params_total": model.params_total, "params_active": model.params_active,
                    "layers": model.layers, "hidden": model.hidden, "heads": model.heads, "kv_heads": model.kv,
                    "ffn": model.ffn, "vocab": model.vocab, "source": model.source}
    return out


def run(args) -> int:
    out = compute(args)
    if args.json:
        print(json.dumps(out))
        return 0
    m = out["model"]
    rows = [
        ("params", f"{out['params']:.4g}"),
        ("tokens", f"{out['tokens']:.4g}"),
        ("tokens per param", f"{out['tokens_per_param']:.1f}"),
        ("compute (6ND)", f"{out['compute']:.4g} FLOP"),
        ("compute with attention", f"{out['compute_with_attention']:.4g} FLOP (seq {out['seq_len']})"),
        (f"loss ({out['fit']} fit)", f"{out['loss']:.4f}"),
        ("rule", out["rule"]),
        ("architecture", f"{m['name']}: {m['layers']} layers, hidden {m['hidden']}, {m['heads']} heads "
                         f"({m['kv_heads']} KV), ffn {m['ffn']}, vocab {m['vocab']}"),
    ]
    if "note" in out:
        rows.append(("note", out["note"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
