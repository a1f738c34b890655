"""`gpusim catalog` and `gpusim topology`: every shipped entry is listed,
user catalog files add and override entries, bad entries and files are one
line on stderr with exit status 2."""
import json

import pytest

from hardware.catalog import load_catalog
from sim.cli import main

GPUS = ["a100", "a100-40gb", "h100", "h800", "h200", "b200", "b300", "gb200", "gb300"]
SYSTEMS = ["dgx-a100", "dgx-h100", "dgx-h200", "hgx-h800", "dgx-b200", "dgx-b300", "gb200-nvl72", "gb300-nvl72"]
FABRICS = ["hdr", "ndr", "xdr", "spectrum-x"]


def run_json(capsys, *argv):
    assert main(list(argv) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("kind, names", [("gpus", GPUS), ("systems", SYSTEMS), ("fabrics", FABRICS)])
def test_every_shipped_entry_is_listed_with_a_source(capsys, kind, names):
    data = run_json(capsys, "catalog", kind)
    listed = [e["name"] for e in data[kind]]
    assert set(names) <= set(listed)
    assert all(e["source"] for e in data[kind])
    assert main(["catalog", kind]) == 0
    table = capsys.readouterr().out
    for name in names:
        assert any(line.split()[0] == name for line in table.splitlines() if line.strip())


def test_models_list_layers_hidden_and_params(capsys):
    data = run_json(capsys, "catalog", "models")
    by_name = {m["name"]: m for m in data["models"]}
    l70 = by_name["llama3-70b"]
    assert (l70["layers"], l70["hidden"]) == (80, 8192)
    assert 69e9 < l70["params_total"] < 72e9
    ds = by_name["deepseek-v3"]
    assert ds["params_active"] < ds["params_total"] / 10
    assert main(["catalog", "models"]) == 0
    assert "llama3-405b" in capsys.readouterr().out


def test_shipped_figures_match_the_reference():
    cat = load_catalog()
    h100 = cat.gpu("h100")
    assert (h100.tflops["bf16"], h100.tflops["fp8"], h100.hbm_tbps, h100.nvlink_gbps_bidir, h100.tdp_w) == \
        (989.5, 1979, 3.35, 900, 700)
    assert cat.gpu("b200").tflops["fp4"] == 9000 and cat.gpu("gb300").tflops["fp4"] == 15000
    assert cat.system("gb200-nvl72").nvlink_domain_gpus == 72
    assert cat.system("dgx-a100").nic_gbps == 200 and cat.fabric("xdr").link_gbps == 800
    assert cat.fabric("ndr").radix == 64 and cat.fabric("xdr").radix == 144


def test_user_catalog_adds_and_overrides(capsys, tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("""
gpus:
  h100: {price_usd: 22000, tflops: {bf16: 900}}
  x1:
    tflops: {bf16: 100}
    hbm_gib: 24
    hbm_tbps: 1.0
    nvlink_gbps_bidir: 100
    tdp_w: 300
    idle_w: 30
    source: my lab
systems:
  x1-box: {gpu: x1, gpus_per_node: 4, nvlink_domain_gpus: 4, nics_per_node: 2, nic_gbps: 100,
           fabric: ndr, su_nodes: 16, node_max_w: 2000, node_overhead_w: 500, source: my lab}
models:
  tiny: {layers: 2, hidden: 256, heads: 4, ffn: 1024, vocab: 1000}
""")
    gpus = {g["name"]: g for g in run_json(capsys, "catalog", "gpus", "--catalog", str(f))["gpus"]}
    assert gpus["h100"]["price_usd"] == 22000
    assert gpus["h100"]["tflops"]["bf16"] == 900 and gpus["h100"]["tflops"]["fp8"] == 1979   # merged
    assert gpus["x1"]["source"] == "my lab"
    systems = [s["name"] for s in run_json(capsys, "catalog", "systems", "--catalog", str(f))["systems"]]
    assert "x1-box" in systems
    models = [m["name"] for m in run_json(capsys, "catalog", "models", "--catalog", str(f))["models"]]
    assert "tiny" in models
    # the shipped catalog is untouched
    assert load_catalog().gpu("h100").price_usd == 30000


@pytest.mark.parametrize("text, expect", [
    ("gpus:\n  x1: {tflops: {bf16: 100}}\n", "missing field"),
    ("gpus:\n  h100: {tdp_ww: 700}\n", "tdp_w"),
    ("gpus:\n  h100: {tdp_w: lots}\n", "tdp_w"),
    ("gpus:\n  h100: {idle_w: 900}\n", "idle_w must be below"),
    ("gpus:\n  h100: 5\n", "mapping"),
    ("gpuz:\n  h100: {price_usd: 1}\n", "gpus"),
    ("systems:\n  dgx-h100: {gpu: h1000}\n", "unknown GPU"),
    ("systems:\n  dgx-h100: {fabric: ndx}\n", "unknown fabric"),
    ("systems:\n  gb200-nvl72: {su_nodes: 10}\n", "su_nodes"),
    ("fabrics:\n  ndr: {nic_efficiency: 1.5}\n", "nic_efficiency"),
    ("models:\n  tiny: {layers: 2}\n", "missing field"),
    ("gpus: [h100]\n", "must map names"),
    ("gpus: {h100: {price_usd: 1}\n", "YAML syntax"),
    ("", "empty"),
])
def test_bad_catalog_entries_are_one_line_exit_2(capsys, tmp_path, text, expect):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    err = fails(capsys, "catalog", "gpus", "--catalog", str(f))
    assert expect in err


def test_missing_catalog_file_and_unknown_kind(capsys, tmp_path):
    assert "does not exist" in fails(capsys, "catalog", "gpus", "--catalog", str(tmp_path / "nope.yaml"))
    with pytest.raises(SystemExit) as exc:
        main(["catalog", "switches"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "gpus" in err


# ------------------------------------------------------------------ topology
def write(tmp_path, text, name="s.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_topology_of_a_4su_h100_superpod(capsys, tmp_path):
    f = write(tmp_path, "name: pod\ncluster: {system: dgx-h100, nodes: 128}\n")
    info = run_json(capsys, "topology", f)
    assert (info["gpus"], info["nodes"], info["nvlink_domains"]) == (1024, 128, 128)
    assert info["switches"] == {"leaf": 32, "spine": 16, "core": 0, "interconnect": 0}
    assert info["bisection_Bps"] == pytest.approx(25.6e12)
    assert info["pools"][0]["oversubscription"] == {"leaf": 1.0, "spine": 1.0, "core": 1.0}
    assert main(["topology", f]) == 0
    out = capsys.readouterr().out
    assert "1,024 GPUs" in out and "leaf 32, spine 16" in out


def test_topology_with_pools_oversubscription_and_user_catalog(capsys, tmp_path):
    write(tmp_path, "systems:\n  dgx-h100-cheap: {gpu: h100, gpus_per_node: 8, nvlink_domain_gpus: 8, "
                    "nics_per_node: 4, nic_gbps: 400, fabric: ndr, su_nodes: 32, node_max_w: 10200, "
                    "node_overhead_w: 2500, source: test}\n", "cat.yaml")
    f = write(tmp_path, """
name: mixed
catalog: cat.yaml
cluster:
  pools:
    - {name: train, system: dgx-h100, nodes: 128, fabric: {oversubscription: {leaf: 2}}}
    - {name: racks, system: gb200-nvl72, nodes: 36}
    - {name: cheap, system: dgx-h100-cheap, nodes: 32}
""")
    info = run_json(capsys, "topology", f)
    pools = {p["name"]: p for p in info["pools"]}
    assert pools["train"]["switches"]["spine"] == 8
    assert pools["train"]["oversubscription"]["leaf"] == 2.0
    assert pools["racks"]["nvlink_domains"] == 2 and pools["racks"]["nvlink_domain_gpus"] == 72
    assert pools["cheap"]["nic_bw_per_gpu_Bps"] == pytest.approx(25e9)
    assert info["switches"]["interconnect"] >= 1
    assert info["gpus"] == 1024 + 144 + 256


@pytest.mark.parametrize("text, expect", [
    ("cluster: {system: dgx-h1000, nodes: 4}\n", "dgx-h100"),
    ("cluster: {system: gb200-nvl72, nodes: 20}\n", "multiple of 18"),
    ("cluster: {system: dgx-h100, nodes: 4, fabric: {link: ndx}}\n", "unknown fabric"),
    ("cluster: {system: dgx-h100, nodes: 4, fabric: {oversubscription: 0.5}}\n", ">= 1"),
])
def test_bad_topology_scenarios(capsys, tmp_path, text, expect):
    assert expect in fails(capsys, "topology", write(tmp_path, text))
