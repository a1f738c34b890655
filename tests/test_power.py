"""Power, energy and cost: closed forms, a measured DGX H100 training node,
series vs totals, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hardware import power
from hardware.catalog import load_catalog
from workloads.errors import InputError

CAT = load_catalog()
DGX_H100, H100 = CAT.system("dgx-h100"), CAT.gpu("h100")
DGX_B200, B200 = CAT.system("dgx-b200"), CAT.gpu("b200")


def test_busy_dgx_h100_matches_measured_training_power():
    # an 8-GPU H100 node ran compute-heavy training at ~76% of its 10.2 kW
    # rating (Newkirk et al. 2025); the highest draw seen was 8.4 kW (Latif et al. 2025)
    busy = power.node_power_w(DGX_H100, H100, 8)
    assert abs(busy - 0.76 * 10_200) <= 0.10 * 0.76 * 10_200
    assert busy < 8_400 < DGX_H100.node_max_w
    assert power.node_power_w(DGX_H100, H100, 0) == DGX_H100.node_overhead_w + 8 * H100.idle_w


@pytest.mark.parametrize("name", list(CAT.systems))
def test_every_system_stays_under_its_rated_maximum(name):
    s = CAT.system(name)
    g = CAT.system_gpu(s)
    full = power.node_power_w(s, g, s.gpus_per_node, busy_fraction=1.0)
    assert power.node_power_w(s, g, 0) < power.node_power_w(s, g, s.gpus_per_node) <= full <= s.node_max_w


def test_energy_closed_form():
    nodes, wall = 4, 10 * 3600.0
    busy = 32 * wall / 2                        # half the GPU-time busy
    idle_w = nodes * (DGX_H100.node_overhead_w + 8 * H100.idle_w)
    extra_w = power.gpu_busy_w(H100) - H100.idle_w
    expected = (idle_w * wall + extra_w * busy) * 1.3 / 3.6e6
    assert power.energy_kwh(DGX_H100, H100, nodes, busy, wall, pue=1.3) == pytest.approx(expected)
    assert power.energy_kwh(DGX_H100, H100, nodes, busy, wall) == pytest.approx(expected)   # default PUE 1.3
    assert power.DEFAULT_PUE == 1.3 and power.DEFAULT_USD_PER_KWH == 0.08


def test_pue_scales_facility_energy():
    a = power.energy_kwh(DGX_B200, B200, 10, 1e6, 1e5, pue=1.0)
    b = power.energy_kwh(DGX_B200, B200, 10, 1e6, 1e5, pue=1.56)
    assert b == pytest.approx(1.56 * a)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 64), min_size=1, max_size=30), st.lists(st.floats(1, 1e4), min_size=30, max_size=30))
def test_series_sums_to_the_total(busy, gaps):
    gaps = gaps[: len(busy)]
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    series = power.energy_series_kwh(DGX_H100, H100, 8, times, busy)
    assert series.shape == (len(busy),)
    busy_gpu_s = float(np.dot(busy, gaps))
    total = power.energy_kwh(DGX_H100, H100, 8, busy_gpu_s, float(times[-1]))
    assert series.sum() == pytest.approx(total, rel=1e-9)


def test_cluster_power_between_idle_and_full():
    idle = power.cluster_power_w(DGX_H100, H100, 128, 0)
    full = power.cluster_power_w(DGX_H100, H100, 128, 1024)
    half = power.cluster_power_w(DGX_H100, H100, 128, 512)
    assert idle < half < full and half == pytest.approx((idle + full) / 2)


def test_costs():
    assert power.rental_cost_usd(1000, 2.5) == pytest.approx(2500)
    assert power.rental_cost_usd(1000, gpu=H100) == pytest.approx(1000 * H100.cloud_usd_per_gpu_hour)
    with pytest.raises(InputError, match="no rental price"):
        power.rental_cost_usd(1000, gpu=CAT.gpu("a100"))
    per_h = power.capex_usd_per_gpu_hour(DGX_H100, amortization_years=4)
    assert per_h == pytest.approx(400_000 / 8 / (4 * 8766))
    assert power.electricity_cost_usd(1000) == pytest.approx(80.0)
    own = power.ownership_cost_usd(DGX_H100, nodes=2, wall_seconds=3600, energy_kwh_total=100)
    assert own["capex_usd"] == pytest.approx(16 * per_h)
    assert own["energy_usd"] == pytest.approx(8.0)
    assert own["total_usd"] == pytest.approx(own["capex_usd"] + own["energy_usd"])


def test_a_year_of_a_4su_superpod():
    """1,024 H100s for a year at 80% busy: ~1.1 MW at the meter, ~$0.8M of electricity."""
    wall = 8766 * 3600.0
    kwh = power.energy_kwh(DGX_H100, H100, 128, 0.8 * 1024 * wall, wall)
    mw = kwh / 8766 / 1000
    assert 0.8 < mw < 1.4
    assert 0.5e6 < power.electricity_cost_usd(kwh) < 1.0e6


@pytest.mark.parametrize("call", [
    lambda: power.energy_kwh(DGX_H100, H100, 1, 9 * 3600, 3600),           # more busy time than GPUs
    lambda: power.energy_kwh(DGX_H100, H100, 1, 0, -1),
    lambda: power.energy_kwh(DGX_H100, H100, 1, 0, 10, pue=0.9),
    lambda: power.node_power_w(DGX_H100, H100, 9),
    lambda: power.energy_series_kwh(DGX_H100, H100, 1, [0, 10, 5], [1, 1]),
    lambda: power.energy_series_kwh(DGX_H100, H100, 1, [0, 10], [9]),
    lambda: power.energy_series_kwh(DGX_H100, H100, 1, [0, 10, 20, 30], [1]),
    lambda: power.capex_usd_per_gpu_hour(DGX_H100, 0),
    lambda: power.gpu_busy_w(H100, 1.5),
])
def test_bad_input_is_an_input_error(call):
    with pytest.raises(InputError):
        call()
