"""`gpusim topology SCENARIO`: the cluster a scenario describes, as built by
hardware.topology: GPUs, nodes, NVLink domains, switches per tier,
bisection bandwidth and oversubscription."""
from __future__ import annotations

import json

from hardware.topology import PoolSpec, build_topology, summary
from sim.commands.catalog import table

NAME = "topology"
HELP = "show the cluster network of a scenario (switches, bisection, oversubscription)"
DESCRIPTION = ("Build the cluster of a scenario file as a DGX SuperPOD-style fabric (NVLink domains, "
               "rail-optimized leaf / spine / core tiers) and print GPUs, nodes, NVLink domains, switches "
               "per tier, bisection bandwidth and oversubscription.")


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def pool_specs(scenario) -> list[PoolSpec]:
    """hardware PoolSpecs from a loaded scenario's cluster."""
    return [PoolSpec(system=p.system, nodes=p.nodes, fabric=p.fabric.link,
                     oversubscription=p.fabric.tier_ratios(), name=p.name)
            for p in scenario.cluster.pools]


def topology_of(scenario, catalogs):
    """The Topology of a loaded scenario."""
    return build_topology(pool_specs(scenario), catalogs.hardware)


def _ratios(r: dict) -> str:
    return "/".join(f"{r[t]:g}" for t in ("leaf", "spine", "core"))


def run(args) -> int:
    from sim.scenario import check_scenario, load_scenario

    scenario = load_scenario(args.scenario, check=False)
    catalogs = check_scenario(scenario)
    topo = topology_of(scenario, catalogs)
    info = summary(topo)
    info["scenario"] = scenario.name
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    header = ["pool", "system", "fabric", "nodes", "GPUs", "NVLink domains", "SUs", "tiers",
              "leaf", "spine", "core", "oversub l/s/c", "bisection TB/s"]
    body = []
    for p in info["pools"]:
        sw = p["switches"]
        body.append([p["name"], p["system"], p["fabric"], f"{p['nodes']:,}", f"{p['gpus']:,}",
                     f"{p['nvlink_domains']:,} x {p['nvlink_domain_gpus']}", str(p["scalable_units"]),
                     str(p["tiers"]), f"{sw['leaf']:,}", f"{sw['spine']:,}", f"{sw['core']:,}",
                     _ratios(p["oversubscription"]), f"{p['bisection_Bps'] / 1e12:,.1f}"])
    sw = info["switches"]
    print(f"cluster {scenario.name!r}: {info['gpus']:,} GPUs on {info['nodes']:,} nodes, "
          f"{info['nvlink_domains']:,} NVLink domains")
    print(table(header, body))
    extra = f", interconnect {sw['interconnect']:,}" if len(info["pools"]) > 1 else ""
    print(f"switches: leaf {sw['leaf']:,}, spine {sw['spine']:,}, core {sw['core']:,}{extra}; "
          f"bisection {info['bisection_Bps'] / 1e12:,.1f} TB/s (line rate, one direction)")
    return 0
