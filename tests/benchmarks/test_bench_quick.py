"""The benchmark harness: a ``--quick`` end-to-end run (slow) and the pieces it relies on.

Never a speed assertion: the quick run checks that every system trained (finite losses, real
tokens counted, every step measured) and that results.json has its documented shape.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import report
from benchmarks.config import SYSTEM_NAMES
from benchmarks.examples import build_unpacked, example_token_count, select_records
from benchmarks.measure import Recorder, real_tokens, training_flops_per_token
from benchmarks.workloads import ALPACA_LENGTHS, generate_records, get_workload
from llama_lora.model.presets import build_byte_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {
    "schema_version",
    "created",
    "command",
    "machine",
    "versions",
    "workload",
    "config",
    "data",
    "ceiling",
    "flops",
    "order",
    "runs",
    "summary",
    "ceiling_fraction",
    "loss_check",
    "ratios",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One ``--quick`` run of all three systems (in subprocesses, one torch thread each)."""
    out = tmp_path_factory.mktemp("bench_quick")
    command = [
        sys.executable,
        str(REPO_ROOT / "benchmarks" / "bench_train.py"),
        "--quick",
        "--threads",
        "1",
        "--output-dir",
        str(out),
        "--cache-dir",
        str(out / "cache"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_quick_run_results_shape(quick_run):
    out, stdout, results = quick_run
    assert RESULT_KEYS <= set(results)
    assert set(results["runs"]) == set(SYSTEM_NAMES) == set(results["summary"])
    assert results["versions"]["torch"] and results["machine"]["cpu_model"]
    assert results["ceiling"]["gflops"] > 0 and results["flops"]["model_flops_per_token"] > 0
    assert set(results["loss_check"]) == {"reference", "tolerance", "relative_deviation", "agree"}
    assert set(results["ratios"]) >= {
        "tokens_per_second_llama_lora_over_hf_trainer",
        "tokens_per_second_llama_lora_over_trl_sft",
    }
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stdout.strip().splitlines()[-1].startswith("ratio ")  # ratios are printed last


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEM_NAMES)
def test_quick_run_every_system_trained(quick_run, system):
    _, _, results = quick_run
    config = results["config"]
    (run,) = results["runs"][system]  # --quick: one round
    assert run["ok"], run.get("traceback")
    assert run["steps_measured"] == config["steps"]
    assert len(run["tokens_per_step_all"]) == config["total_steps"]
    assert run["real_tokens"] > 0 and 0 <= run["padding_fraction"] < 1
    assert run["final_loss_step"] == config["total_steps"]
    assert all(math.isfinite(loss) for _, loss in run["losses"])
    assert run["peak_rss_bytes"] > 0


@pytest.mark.parametrize("workload", ["quick", "cpu-small", "llama2-7b"])
def test_flops_parameter_counts_match_the_built_model(workload):
    from transformers import LlamaForCausalLM

    from benchmarks.checkpoint import llama_config

    config = llama_config(get_workload(workload), vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    linears = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    flops = training_flops_per_token(config, lora_r=16, context_tokens=100.0, checkpointing=True)
    assert flops["matmul_params"] == linears
    assert flops["hardware_flops_per_token"] > flops["model_flops_per_token"] > 4 * linears


def test_flops_lora_parameter_count_matches_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from benchmarks.checkpoint import llama_config

    config = llama_config(get_workload("quick"), vocab_size=320)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=16, target_modules="all-linear"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert training_flops_per_token(config, 16, 1.0, False)["lora_params"] == trainable


class _Echo(torch.nn.Module):
    def forward(self, input_ids, attention_mask=None):
        return input_ids


@pytest.mark.parametrize(
    "mask, pad_id, expected_real",
    [
        (torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), 0, 5),  # HF padding: the 2D mask says
        (torch.ones(2, 1, 4, 4, dtype=torch.bool), 0, 6),  # packed 4D mask: the pad id says
        (None, 0, 6),  # packed, padding-free attention: the pad id says
        (None, None, 8),  # TRL's padding-free rows (pad id = EOS, not given): all real
    ],
)
def test_recorder_counts_real_tokens_and_skips_warmup(monkeypatch, mask, pad_id, expected_real):
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 0]])
    clock = iter([10.0, 11.0, 13.0, 16.0])
    monkeypatch.setattr("benchmarks.measure.time.perf_counter", lambda: next(clock))
    recorder = Recorder(warmup_steps=1, total_steps=4, pad_token_id=pad_id)
    model = _Echo().train()
    recorder.attach(model)
    for step in range(1, 5):
        model(input_ids=ids, attention_mask=mask)
        recorder.step_end()
        recorder.log_loss(step, 2.0)
    summary = recorder.summary()
    assert summary["window_seconds"] == 6.0  # from the end of step 1 to the end of step 4
    assert summary["step_seconds"] == [1.0, 2.0, 3.0]
    assert summary["real_tokens"] == 3 * expected_real
    assert summary["padding_fraction"] == pytest.approx(1 - expected_real / 8)
    assert real_tokens(ids, {"attention_mask": mask}, pad_id) == expected_real


def test_recorder_refuses_a_short_run():
    recorder = Recorder(warmup_steps=1, total_steps=3)
    recorder.step_end()
    recorder.step_end()
    with pytest.raises(RuntimeError, match="2 of 3 steps"):
        recorder.summary()


def test_a_failing_system_is_reported_not_raised(tmp_path):
    from benchmarks.config import BenchConfig
    from benchmarks.runner import run_once

    config = BenchConfig("quick", "none", "none", 8, 8, 1, 8, steps=1, warmup_steps=1, log_every=1)
    config.save(tmp_path / "config.json")
    result = run_once("no_such_system", 0, tmp_path / "config.json", tmp_path, timeout=300)
    assert not result["ok"] and "unknown system 'no_such_system'" in result["error"]
    assert Path(result["log"]).is_file()


def test_generated_records_follow_alpaca_lengths_and_filter_exactly():
    tokenizer = build_byte_tokenizer()
    records = generate_records(300, tokenizer, seed=1)
    outputs = [len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) for r in records]
    mu, sigma = ALPACA_LENGTHS["output"]
    median = sorted(outputs)[len(outputs) // 2]
    assert math.exp(mu) * 0.7 < median < math.exp(mu) * 1.3
    kept = select_records(records, tokenizer, max_length=300)
    assert 0 < len(kept) < len(records)  # the byte tokenizer's template alone is ~190 tokens
    rows = build_unpacked(kept, tokenizer, max_length=300, seed=0)  # raises if any was cut
    counts = sorted(example_token_count(r, tokenizer) for r in kept)
    assert sorted(len(ids) for ids in rows["input_ids"]) == counts


@pytest.mark.parametrize(
    "losses, tolerance, agree",
    [
        ({"llama_lora": 10.0, "hf_trainer": 10.1, "trl_sft": 9.95}, 0.02, True),
        ({"llama_lora": 10.0, "hf_trainer": 10.3, "trl_sft": 9.95}, 0.02, False),
        ({"llama_lora": 10.0, "hf_trainer": float("nan")}, 0.02, False),
    ],
)
def test_loss_check(losses, tolerance, agree):
    summary = {name: {"final_loss": loss} for name, loss in losses.items()}
    assert report.loss_check(summary, tolerance)["agree"] is agree


def test_ratios_divide_llama_lora_by_each_baseline():
    summary = {
        "llama_lora": {"real_tokens_per_second": 900.0, "peak_rss_bytes": 2.0},
        "hf_trainer": {"real_tokens_per_second": 300.0, "peak_rss_bytes": 4.0},
    }
    assert report.ratios(summary) == {
        "tokens_per_second_llama_lora_over_hf_trainer": 3.0,
        "peak_rss_llama_lora_over_hf_trainer": 0.5,
    }


def test_cli_bench_takes_the_harness_options():
    from llama_lora.cli import bench
    from llama_lora.cli.main import build_parser

    args = build_parser().parse_args(
        ["bench", "--quick", "--systems", "llama_lora", "--steps", "2"]
    )
    assert args.func is bench.run and args.quick and args.steps == 2
