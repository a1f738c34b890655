"""Collective times: closed forms of the alpha-beta algorithms, invariants,
and the bus bandwidths nccl-tests measures on real systems (within 10%)."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from hardware.catalog import load_catalog
from hardware.collectives import (ALGORITHMS, OPS, Level, bus_bandwidth, collective_choice, collective_time,
                                  levels_for_group, network_level, nvlink_level)
from hardware.topology import PoolSpec, build_topology, levels_for_placement
from workloads.errors import InputError

CAT = load_catalog()
BIG = 8 * 2**30          # nccl-tests peak bus bandwidths are quoted at GB-sized buffers


def flat(n, bw=100e9, lat=0.0, **kw):
    return [Level("x", n, bw, lat, **kw)]


def busbw(op, levels, in_network=False, nbytes=BIG):
    n = math.prod(lv.size for lv in levels)
    return bus_bandwidth(op, nbytes, collective_time(op, nbytes, levels, in_network=in_network), n)


# ----------------------------------------------------------- closed forms
@pytest.mark.parametrize("n", [2, 3, 8, 72, 1000])
def test_ring_all_reduce_moves_2_n_minus_1_over_n(n):
    t = collective_time("all_reduce", 1e9, flat(n), algorithm="ring")
    assert t == pytest.approx(2 * (n - 1) / n * 1e9 / 100e9)


@pytest.mark.parametrize("op", ["all_gather", "reduce_scatter"])
@pytest.mark.parametrize("n", [2, 8, 64])
def test_ring_gather_scatter_move_n_minus_1_over_n(op, n):
    assert collective_time(op, 1e9, flat(n)) == pytest.approx((n - 1) / n * 1e9 / 100e9)


def test_ring_latency_term_is_steps_times_alpha():
    n, alpha = 16, 3e-6
    t = collective_time("all_reduce", 1e3, flat(n, lat=alpha), algorithm="ring")
    assert t == pytest.approx(2 * (n - 1) / n * 1e3 / 100e9 + 2 * (n - 1) * alpha)


def test_tree_trades_bandwidth_for_log_latency():
    n, alpha = 1024, 5e-6
    lv = flat(n, lat=alpha)
    tree = collective_time("all_reduce", 1e3, lv, algorithm="tree")
    assert tree == pytest.approx(2 * 1e3 / 100e9 + 2 * 10 * alpha)
    ring = collective_time("all_reduce", 1e3, lv, algorithm="ring")
    assert tree < ring                                     # small message: tree wins
    assert collective_time("all_reduce", 1e3, lv) == pytest.approx(tree)
    eight = flat(8, lat=alpha)
    big_ring = collective_time("all_reduce", 1e10, eight, algorithm="ring")
    assert big_ring < collective_time("all_reduce", 1e10, eight, algorithm="tree")   # large: ring wins


def test_hierarchical_all_reduce_closed_form():
    inner = Level("nvlink", 8, 300e9, 0.0)
    outer = Level("network", 4, 200e9, 0.0)
    t = collective_time("all_reduce", 1e9, [inner, outer], algorithm="hierarchical")
    rs_ag = 2 * (7 / 8) * 1e9 / 300e9
    ar = 2 * (3 / 4) * 1e9 / 200e9
    assert t == pytest.approx(rs_ag + ar)


def test_in_network_all_reduce_sends_the_buffer_once():
    lv = flat(8, in_network=True, in_network_bw_Bps=150e9)
    assert collective_time("all_reduce", 1e9, lv, in_network=True) == pytest.approx(1e9 / 150e9)
    assert collective_time("all_reduce", 1e9, lv, in_network=False) == pytest.approx(2 * 7 / 8 * 1e9 / 100e9)
    # pipelined NVLS + SHARP across levels: the slower phase sets the time
    two = [Level("nvlink", 8, 300e9, 0.0, True, 200e9), Level("network", 4, 400e9, 0.0, True, 250e9)]
    t, algo = collective_choice("all_reduce", 1e9, two, in_network=True)
    assert algo == "in_network" and t == pytest.approx(1e9 / 200e9)
    assert collective_choice("all_reduce", 1e9, two, in_network=False)[1] != "in_network"


def test_all_to_all_closed_form_two_levels():
    inner = Level("nvlink", 8, 400e9, 0.0)
    outer = Level("network", 4, 8 * 50e9, 0.0)
    n = 32
    t = collective_time("all_to_all", 1e9, [inner, outer])
    nvlink_part = 7 / n * 1e9 / 400e9
    network_part = (n - 8) / n * 1e9 / 50e9        # each GPU's own NIC rail
    assert t == pytest.approx(max(nvlink_part, network_part) + (n - 1) * 1e-6, rel=1e-6)


def test_send_recv_uses_one_gpus_share_of_the_outer_level():
    lv = [Level("nvlink", 8, 400e9, 0.0), Level("network", 2, 8 * 50e9, 1e-6)]
    assert collective_time("send_recv", 1e9, lv) == pytest.approx(1e9 / 50e9 + 1e-6)
    assert collective_time("send_recv", 1e9, flat(2, lat=1e-6)) == pytest.approx(1e9 / 100e9 + 1e-6)


def test_trivial_groups_and_empty_buffers_cost_nothing():
    for op in OPS:
        assert collective_time(op, 1e9, []) == 0.0
        assert collective_time(op, 1e9, flat(1)) == 0.0
        assert collective_time(op, 0, flat(8)) == 0.0


@pytest.mark.parametrize("bad", [
    dict(op="all_reduce_x"), dict(algorithm="butterfly"), dict(nbytes=-1), dict(nbytes=float("nan"))])
def test_bad_arguments_are_input_errors(bad):
    args = dict(op="all_reduce", nbytes=1e6, levels=flat(4), algorithm="auto")
    args.update(bad)
    with pytest.raises(InputError):
        collective_time(**args)


# -------------------------------------------------------------- invariants
level_st = st.builds(Level, name=st.just("l"), size=st.integers(1, 64), bw_Bps=st.floats(1e9, 1e12),
                     latency_s=st.floats(0, 1e-5), in_network=st.booleans(), in_network_bw_Bps=st.floats(1e9, 1e12))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(OPS), st.floats(1, 1e11), st.lists(level_st, min_size=1, max_size=3), st.booleans())
def test_auto_is_never_slower_than_any_algorithm(op, nbytes, levels, in_network):
    auto = collective_time(op, nbytes, levels, "auto", in_network)
    for algo in ALGORITHMS[1:]:
        assert auto <= collective_time(op, nbytes, levels, algo, in_network) * (1 + 1e-9)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(OPS), st.sampled_from(ALGORITHMS), st.floats(1, 1e10), st.floats(1.01, 10),
       st.lists(level_st, min_size=1, max_size=3))
def test_time_grows_with_size_and_falls_with_bandwidth(op, algo, nbytes, k, levels):
    t = collective_time(op, nbytes, levels, algo)
    assert collective_time(op, nbytes * k, levels, algo) >= t
    faster = [Level(lv.name, lv.size, lv.bw_Bps * k, lv.latency_s, lv.in_network, lv.in_network_bw_Bps * k)
              for lv in levels]
    assert collective_time(op, nbytes, faster, algo) <= t * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(1e6, 1e10), st.integers(2, 16))
def test_time_grows_with_oversubscription(nbytes, domains):
    system, gpu, fabric = CAT.system("dgx-h100"), CAT.gpu("h100"), CAT.fabric("ndr")
    group = 8 * domains
    base = levels_for_group(system, fabric, gpu, group)
    worse = levels_for_group(system, fabric, gpu, group, oversubscription=2.0)
    for op in ("all_reduce", "all_gather", "all_to_all"):
        assert collective_time(op, nbytes, worse) >= collective_time(op, nbytes, base)


# ------------------------------------------ measured bus bandwidths (10%)
H100 = build_topology([PoolSpec("dgx-h100", 16)], CAT)
A100 = build_topology([PoolSpec("dgx-a100", 20)], CAT)


def within(value, target, tol=0.10):
    return abs(value - target) <= tol * target


def test_h100_nvlink_all_reduce_with_nvlink_sharp():
    # nccl-tests, DGX H100 8 GPUs, NVLS: ~450-480 GB/s bus bandwidth
    bw = busbw("all_reduce", levels_for_placement(H100, nodes=[0]), in_network=True) / 1e9
    assert within(bw, 465)


def test_h100_nvlink_all_reduce_without_nvlink_sharp():
    # nccl-tests, DGX H100 8 GPUs, ring: ~370 GB/s
    bw = busbw("all_reduce", levels_for_placement(H100, nodes=[0])) / 1e9
    assert within(bw, 370)


def test_ndr_connectx7_per_nic():
    # NDR ConnectX-7: 46-49 GB/s of 50 GB/s per NIC
    one_per_node = levels_for_placement(H100, gpus=[0, 8])
    assert within(busbw("all_reduce", one_per_node) / 1e9, 47.5)
    t = collective_time("send_recv", BIG, one_per_node)
    assert within(BIG / t / 1e9, 47.5)
    sixteen = levels_for_placement(H100, gpus=range(0, 128, 8))
    assert within(busbw("all_reduce", sixteen) / 1e9, 47.5)


@pytest.mark.parametrize("nodes", [2, 4, 16])
def test_dgx_a100_eight_hdr_all_reduce_across_nodes(nodes):
    # DGX A100, 8 x HDR 200 Gb/s per node: ~192 GB/s all-reduce bus bandwidth across nodes
    bw = busbw("all_reduce", levels_for_placement(A100, nodes=range(nodes))) / 1e9
    assert within(bw, 192)


def test_a100_has_no_nvlink_sharp():
    assert not levels_for_placement(A100, nodes=[0])[0].in_network
    assert levels_for_placement(H100, nodes=[0])[0].in_network


@pytest.mark.parametrize("nodes", [4, 16])
def test_all_to_all_across_nodes_is_limited_by_nic_bandwidth(nodes):
    levels = levels_for_placement(H100, nodes=range(nodes))
    n = 8 * nodes
    t = collective_time("all_to_all", BIG, levels)
    # bytes each GPU sends off its node, over its own NIC
    per_nic = (n - 8) / n * BIG / t / 1e9
    assert within(per_nic, 50 * CAT.fabric("ndr").nic_efficiency)
    # faster NVLink changes nothing: the NIC is the bottleneck
    faster = [Level(lv.name, lv.size, lv.bw_Bps * 4, lv.latency_s) if lv.name == "nvlink" else lv for lv in levels]
    assert collective_time("all_to_all", BIG, faster) == pytest.approx(t)


def test_cross_node_all_reduce_is_no_faster_than_inside_a_node():
    inside = busbw("all_reduce", levels_for_placement(H100, nodes=[0]))
    across = busbw("all_reduce", levels_for_placement(H100, nodes=range(4)))
    assert across <= inside * 1.001


def test_levels_for_group_strides_over_domains():
    system, gpu, fabric = CAT.system("dgx-h100"), CAT.gpu("h100"), CAT.fabric("ndr")
    dp = levels_for_group(system, fabric, gpu, 16, stride=8)       # TP=8 inside, DP across 16 nodes
    assert [(lv.name, lv.size) for lv in dp] == [("network", 16)]
    assert dp[0].bw_Bps == pytest.approx(50e9 * fabric.nic_efficiency)
    tp = levels_for_group(system, fabric, gpu, 8)
    assert [(lv.name, lv.size) for lv in tp] == [("nvlink", 8)]
    assert levels_for_group(system, fabric, gpu, 1) == []
    lv = nvlink_level(450e9, 8, nvls=False)
    assert not lv.in_network and lv.in_network_bw_Bps == 0
    net = network_level(4, 8, 50e9, 0.95, oversubscription=2, hops=3, hop_latency_s=1e-7, sharp=True)
    assert net.bw_Bps == pytest.approx(8 * 50e9 * 0.95 / 2) and net.in_network
