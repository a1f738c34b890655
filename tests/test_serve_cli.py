"""`gpusim serve-estimate`: JSON and text output, layouts, SLOs, input errors."""
import json

import pytest

from sim.cli import main

KEYS = {"output_tokens_per_s", "requests_per_s", "ttft_s", "tpot_s", "batch_size", "kv_cache_bytes",
        "memory_per_gpu_bytes"}


def run_json(capsys, *argv):
    assert main(["serve-estimate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def run_error(capsys, *argv):
    assert main(["serve-estimate", *argv]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_json_has_the_documented_keys(capsys):
    r = run_json(capsys, "--model", "llama3-8b", "--gpu", "h100", "--gpus", "1", "--tp", "1",
                 "--precision", "fp8", "--input-tokens", "1000", "--output-tokens", "1000")
    assert KEYS <= set(r)
    assert r["replicas"] == 1 and r["tp"] == 1 and r["mode"] == "offline"
    assert r["requests_per_s"] == pytest.approx(r["output_tokens_per_s"] / 1000)
    assert r["memory_per_gpu_bytes"] <= 80 * 2 ** 30
    assert 10_000 < r["output_tokens_per_s"] < 25_000     # trtllm-bench publishes 15,220


def test_gpus_split_into_replicas(capsys):
    base = ["--model", "llama3-8b", "--gpu", "h200", "--input-tokens", "500", "--output-tokens", "2000"]
    one = run_json(capsys, *base, "--tp", "1")
    four = run_json(capsys, *base, "--gpus", "4", "--tp", "1")
    assert four["replicas"] == 4 and four["gpus"] == 4
    assert four["output_tokens_per_s"] == pytest.approx(4 * one["output_tokens_per_s"])
    assert four["batch_size"] == one["batch_size"]


def test_layout_search_when_tp_is_not_given(capsys):
    r = run_json(capsys, "--model", "llama3-405b", "--gpu", "h100", "--gpus", "8", "--input-tokens", "1k",
                 "--output-tokens", "1k")
    assert r["tp"] * r["pp"] == 8 and r["replicas"] == 1


def test_slos_lower_throughput_and_are_met(capsys):
    base = ["--model", "llama3-70b", "--gpu", "h200", "--tp", "2", "--input-tokens", "2000", "--output-tokens", "500"]
    off = run_json(capsys, *base)
    slo = run_json(capsys, *base, "--ttft-slo", "1s", "--tpot-slo", "30ms")
    assert slo["mode"] == "slo" and slo["tpot_s"] <= 0.030 and slo["ttft_s"] <= 1.0
    assert slo["output_tokens_per_s"] < off["output_tokens_per_s"]


def test_moe_with_expert_parallelism(capsys):
    r = run_json(capsys, "--model", "qwen3-235b-a22b", "--gpu", "b200", "--gpus", "8", "--tp", "8", "--ep", "8",
                 "--precision", "fp4", "--input-tokens", "1000", "--output-tokens", "1000")
    assert r["ep"] == 8 and r["kv_precision"] == "fp8"
    assert 25_000 < r["output_tokens_per_s"] < 70_000       # trtllm-bench publishes 42,391


def test_human_output_is_aligned_text(capsys):
    assert main(["serve-estimate", "--model", "llama3-8b", "--gpu", "h100", "--input-tokens", "128",
                 "--output-tokens", "128", "--tp", "1"]) == 0
    out = capsys.readouterr().out
    assert "output tokens/s" in out and "TTFT" in out and "TPOT" in out and "memory per GPU" in out
    values = [line.index(line.split("  ", 1)[1].strip()) for line in out.splitlines() if "  " in line]
    assert len(set(values)) == 1


def test_model_that_does_not_fit_is_an_input_error(capsys):
    line = run_error(capsys, "--model", "llama3-405b", "--gpu", "h100", "--gpus", "1", "--tp", "1",
                     "--input-tokens", "100", "--output-tokens", "100")
    assert "needs" in line and "GiB" in line and "80.0 GiB" in line


@pytest.mark.parametrize("argv, words", [
    (["--model", "llama-8b", "--gpu", "h100"], "did you mean"),
    (["--model", "llama3-8b", "--gpu", "h10"], "unknown GPU"),
    (["--model", "llama3-8b", "--gpu", "a100"], "fp8"),
    (["--model", "llama3-8b", "--gpu", "h100", "--tp", "3", "--gpus", "8"], "no layout"),
    (["--model", "llama3-8b", "--gpu", "h100", "--ep", "2", "--tp", "2"], "experts"),
    (["--model", "llama3-8b", "--gpu", "h100", "--tpot-slo", "fast"], "duration"),
    (["--model", "llama3-8b", "--gpu", "h100", "--tpot-slo", "0.1ms"], "SLOs cannot be met"),
    (["--model", "llama3-8b", "--gpu", "h100", "--samples", "0"], "--samples"),
    (["--model", "llama3-8b"], "--gpu"),
])
def test_bad_input_is_one_line(capsys, argv, words):
    line = run_error(capsys, *argv, "--input-tokens", "100", "--output-tokens", "100")
    assert words in line


def test_bad_token_counts(capsys):
    assert "--input-tokens" in run_error(capsys, "--model", "llama3-8b", "--gpu", "h100", "--input-tokens", "-5",
                                         "--output-tokens", "10")
    assert "--output-tokens" in run_error(capsys, "--model", "llama3-8b", "--gpu", "h100", "--input-tokens", "5",
                                          "--output-tokens", "1.5")
    assert "context" in run_error(capsys, "--model", "llama2-70b", "--gpu", "h200", "--input-tokens", "4000",
                                  "--output-tokens", "1000")


def test_missing_required_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve-estimate", "--gpu", "h100", "--input-tokens", "1", "--output-tokens", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error:")
