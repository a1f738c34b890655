"""`gpusim train-estimate`: JSON contract, derived DP, run cost, the
breakdown table, and one-line errors (exit 2) for every kind of bad input."""
import json

import pytest

from sim.cli import main


def run(capsys, *argv):
    code = main(["train-estimate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_the_contract_keys(capsys):
    code, out, err = run(capsys, "--model", "llama3-70b", "--gpu", "h100", "--gpus", "512", "--tp", "8", "--pp", "4",
                         "--seq-len", "8192", "--json")
    assert code == 0 and err == ""
    d = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "mfu", "hw_tflops_per_gpu", "model_tflops_per_gpu",
                "memory_per_gpu_bytes", "parallelism", "breakdown_s"):
        assert key in d
    p = d["parallelism"]
    assert (p["tp"], p["pp"], p["cp"]) == (8, 4, 1)
    assert p["dp"] == 512 // (8 * 4 * 1)            # DP is derived
    assert {"ep", "micro_batch"} <= set(p)
    assert 0 < d["mfu"] < 1 and d["memory_per_gpu_bytes"] <= d["memory_capacity_bytes"]
    assert d["system"] == "dgx-h100" and d["fabric"] == "ndr"


def test_tokens_add_gpu_hours_and_days(capsys):
    code, out, _ = run(capsys, "--model", "llama3-8b", "--gpu", "h100", "--gpus", "64", "--tokens", "1T", "--json")
    d = json.loads(out)
    assert d["gpu_hours"] == pytest.approx(1e12 / d["tokens_per_s"] * 64 / 3600)
    assert d["days"] == pytest.approx(1e12 / d["tokens_per_s"] / 86400)


def test_full_layout_is_evaluated_as_given(capsys):
    code, out, _ = run(capsys, "--model", "llama3-8b", "--gpu", "a100", "--gpus", "16", "--tp", "2", "--pp", "1",
                       "--cp", "1", "--micro-batch", "2", "--recompute", "full", "--zero", "1", "--json")
    p = json.loads(out)["parallelism"]
    assert (p["tp"], p["dp"], p["micro_batch"], p["recompute"], p["zero"]) == (2, 8, 2, "full", 1)


def test_human_output_explain_and_search(capsys):
    code, out, _ = run(capsys, "--model", "mixtral-8x7b", "--gpu", "h100", "--gpus", "64", "--explain", "--search",
                       "--top", "3")
    assert code == 0
    assert "MFU" in out and "pp_bubble" in out and "ep_comm" in out and "weights" in out
    assert out.count("recompute") >= 3                # the layout table lists several layouts


def test_custom_architecture_and_lora(capsys):
    code, out, _ = run(capsys, "--model", "mine", "--layers", "16", "--hidden", "2048", "--heads", "16",
                       "--kv-heads", "4", "--ffn", "5632", "--vocab", "32000", "--gpu", "h100", "--gpus", "8",
                       "--kind", "lora", "--lora-rank", "8", "--json")
    d = json.loads(out)
    assert d["model"] == "mine" and d["kind"] == "lora"


def test_fp8_and_system_flag(capsys):
    code, out, _ = run(capsys, "--model", "deepseek-v3", "--system", "hgx-h800", "--gpus", "256", "--precision", "fp8",
                       "--seq-len", "4096", "--json")
    d = json.loads(out)
    assert code == 0 and d["gpu"] == "h800" and d["precision"] == "fp8"


@pytest.mark.parametrize("argv,words", [
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "1000", "--tp", "8", "--pp", "3"], "does not divide 1000"),
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "48", "--tp", "3"], "heads"),
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "64", "--tp", "16"], "NVLink"),
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "64", "--ep", "2"], "no experts"),
    (["--model", "mixtral-8x7b", "--gpu", "h100", "--gpus", "64", "--tp", "2", "--pp", "1", "--cp", "1", "--ep", "3"],
     "ep=3"),
    (["--model", "llama3-405b", "--gpu", "h100", "--gpus", "8", "--tp", "8", "--pp", "1", "--cp", "1",
      "--micro-batch", "1", "--recompute", "full", "--zero", "0"], "needs"),
    (["--model", "llama3-405b", "--gpu", "h100", "--gpus", "8"], "fits"),
    (["--model", "lama3-70b", "--gpu", "h100", "--gpus", "8"], "llama3-70b"),
    (["--model", "llama3-70b", "--gpu", "h1000", "--gpus", "8"], "unknown GPU"),
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "many"], "--gpus"),
    (["--model", "llama3-70b", "--gpu", "h100", "--gpus", "8", "--seq-len", "8192", "--global-batch-tokens", "100"],
     "shorter"),
    (["--model", "llama3-70b", "--gpus", "8"], "--gpu"),
    (["--model", "mine", "--layers", "4", "--gpu", "h100", "--gpus", "8"], "--hidden"),
    (["--model", "llama3-70b", "--gpu", "a100", "--gpus", "8", "--precision", "fp8"], "fp8"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert words in err
