"""`gpusim catalog`: list the GPUs, systems, fabrics or models gpusim knows,
with a user's catalog file merged in."""
from __future__ import annotations

import json

from sim.catalogs import load_catalogs

NAME = "catalog"
HELP = "list known GPUs, systems, fabrics or models"
DESCRIPTION = ("List the catalog entries gpusim ships (and those a --catalog FILE adds or overrides): "
               "GPUs, systems (nodes and NVLink domains), fabrics (scale-out networks) or models.")
KINDS = ("gpus", "systems", "fabrics", "models")


def add_arguments(parser):
    parser.add_argument("kind", choices=KINDS, help="what to list")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--catalog", metavar="FILE", help="YAML file adding or overriding entries")


def _gpu_row(g) -> dict:
    return {"name": g.name, "architecture": g.architecture, "bf16_tflops": g.tflops.get("bf16"),
            "fp8_tflops": g.tflops.get("fp8"), "fp4_tflops": g.tflops.get("fp4"), "hbm_gib": g.hbm_gib,
            "hbm_tbps": g.hbm_tbps, "nvlink_gbps_bidir": g.nvlink_gbps_bidir, "nvlink_sharp": g.nvlink_sharp,
            "tdp_w": g.tdp_w, "idle_w": g.idle_w, "price_usd": g.price_usd,
            "cloud_usd_per_gpu_hour": g.cloud_usd_per_gpu_hour, "tflops": dict(g.tflops),
            "full_name": g.full_name, "source": g.source}


def _system_row(s) -> dict:
    return {"name": s.name, "gpu": s.gpu, "gpus_per_node": s.gpus_per_node,
            "nvlink_domain_gpus": s.nvlink_domain_gpus, "nics_per_node": s.nics_per_node, "nic_gbps": s.nic_gbps,
            "fabric": s.fabric, "su_nodes": s.su_nodes, "node_max_w": s.node_max_w,
            "node_overhead_w": s.node_overhead_w, "price_usd": s.price_usd, "source": s.source}


def _fabric_row(f) -> dict:
    return {"name": f.name, "kind": f.kind, "link_gbps": f.link_gbps, "radix": f.radix,
            "hop_latency_s": f.hop_latency_s, "nic_efficiency": f.nic_efficiency,
            "in_network_reduction": f.in_network_reduction, "full_name": f.full_name, "source": f.source}


def _model_row(m) -> dict:
    return {"name": m.name, "layers": m.layers, "hidden": m.hidden, "heads": m.heads, "kv_heads": m.kv,
            "ffn": m.ffn, "vocab": m.vocab, "max_seq": m.max_seq, "experts": m.experts,
            "active_experts": m.active_experts, "params_total": m.params_total, "params_active": m.params_active,
            "moe": m.is_moe, "mla": m.is_mla, "aliases": list(m.aliases), "source": m.source}


def rows(kind: str, catalogs) -> list[dict]:
    """One plain dict per entry of `kind`, in catalog order."""
    hw = catalogs.hardware
    if kind == "gpus":
        return [_gpu_row(g) for g in hw.gpus.values()]
    if kind == "systems":
        return [_system_row(s) for s in hw.systems.values()]
    if kind == "fabrics":
        return [_fabric_row(f) for f in hw.fabrics.values()]
    return [_model_row(catalogs.models.models[n]) for n in catalogs.models.names()]


def _num(v, fmt="{:g}") -> str:
    return "-" if v is None else fmt.format(v)


# (header, row -> text) per kind, for the human table
_COLUMNS = {
    "gpus": [("name", lambda r: r["name"]), ("arch", lambda r: r["architecture"]),
             ("BF16 TF", lambda r: _num(r["bf16_tflops"])), ("FP8 TF", lambda r: _num(r["fp8_tflops"])),
             ("FP4 TF", lambda r: _num(r["fp4_tflops"])), ("HBM GiB", lambda r: _num(r["hbm_gib"])),
             ("HBM TB/s", lambda r: _num(r["hbm_tbps"])), ("NVLink GB/s", lambda r: _num(r["nvlink_gbps_bidir"])),
             ("TDP W", lambda r: _num(r["tdp_w"])), ("price $", lambda r: _num(r["price_usd"], "{:,.0f}")),
             ("$/GPU-h", lambda r: _num(r["cloud_usd_per_gpu_hour"]))],
    "systems": [("name", lambda r: r["name"]), ("gpu", lambda r: r["gpu"]),
                ("GPUs/node", lambda r: str(r["gpus_per_node"])), ("NVLink GPUs", lambda r: str(r["nvlink_domain_gpus"])),
                ("NICs", lambda r: f"{r['nics_per_node']} x {r['nic_gbps']:g} Gb/s"), ("fabric", lambda r: r["fabric"]),
                ("SU nodes", lambda r: str(r["su_nodes"])), ("max kW", lambda r: f"{r['node_max_w'] / 1000:g}"),
                ("price $", lambda r: _num(r["price_usd"], "{:,.0f}"))],
    "fabrics": [("name", lambda r: r["name"]), ("kind", lambda r: r["kind"]),
                ("link Gb/s", lambda r: _num(r["link_gbps"])), ("radix", lambda r: str(r["radix"])),
                ("hop ns", lambda r: f"{r['hop_latency_s'] * 1e9:g}"),
                ("NIC eff", lambda r: f"{r['nic_efficiency']:g}"),
                ("SHARP", lambda r: "yes" if r["in_network_reduction"] else "no"),
                ("switch", lambda r: r["full_name"])],
    "models": [("name", lambda r: r["name"]), ("layers", lambda r: str(r["layers"])),
               ("hidden", lambda r: str(r["hidden"])), ("heads", lambda r: f"{r['heads']}/{r['kv_heads']}"),
               ("experts", lambda r: f"{r['active_experts']}/{r['experts']}" if r["experts"] else "-"),
               ("params", lambda r: f"{r['params_total'] / 1e9:,.1f}B"),
               ("active", lambda r: f"{r['params_active'] / 1e9:,.1f}B"),
               ("vocab", lambda r: str(r["vocab"])), ("max seq", lambda r: str(r["max_seq"]))],
}


def table(header: list[str], body: list[list[str]]) -> str:
    """Plain text columns: the first left-aligned, the rest right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header)] + [line(r) for r in body])


def run(args) -> int:
    catalogs = load_catalogs(args.catalog)
    entries = rows(args.kind, catalogs)
    if args.json:
        print(json.dumps({args.kind: entries}, indent=2))
        return 0
    cols = _COLUMNS[args.kind]
    print(table([h for h, _ in cols], [[f(r) for _, f in cols] for r in entries]))
    print(f"\n{len(entries)} {args.kind}; sources: gpusim catalog {args.kind} --json")
    return 0
