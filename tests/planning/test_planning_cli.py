"""``llama-lora plan``: the printed breakdown is the plan's, and the exit status its verdict."""

from __future__ import annotations

import argparse
import re

import pytest
from transformers import LlamaConfig

from llama_lora.cli import plan as plan_cli
from llama_lora.planning import plan_memory
from llama_lora.planning.plan import _TABLE_ROWS


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama2-7b")
    LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        intermediate_size=11008,
        vocab_size=32000,
        num_attention_heads=32,
    ).save_pretrained(directory)
    return directory / "config.json"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="llama-lora")
    plan_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["plan", *argv])
    return args.func(args)


def printed_rows(output: str) -> dict[str, float]:
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^  (\S.*?)\s+([\d.]+) GiB", line)
        if match:
            rows[match.group(1)] = float(match.group(2))
    return rows


@pytest.mark.parametrize(
    ("extra", "kwargs"),
    [
        ([], {}),
        (
            ["--batch-size", "2", "--optimizer", "adamw_8bit", "--quantization", "int8"],
            {"batch_size": 2, "optimizer": "adamw_8bit", "quantization": "int8"},
        ),
        (
            [
                "--no-gradient-checkpointing",
                "--lora-r",
                "64",
                "--target-modules",
                "q_proj",
                "v_proj",
            ],
            {"gradient_checkpointing": False, "lora_r": 64, "target_modules": ["q_proj", "v_proj"]},
        ),
    ],
)
def test_printed_terms_are_the_plan(config_path, capsys, extra, kwargs):
    status = run_cli(str(config_path), "--gpu", "80GB", "--seq-len", "1024", *extra)
    out = capsys.readouterr().out
    plan = plan_memory(config_path, seq_len=1024, **kwargs)
    rows = printed_rows(out)
    storage = kwargs.get("quantization", "nf4")
    for field, label in _TABLE_ROWS:
        assert rows[label.format(storage=storage)] == round(getattr(plan, field) / 2**30, 3)
    assert rows["total"] == round(plan.total_bytes / 2**30, 3)
    assert status == 0
    assert "fits" in out and "suggestion: largest micro-batch" in out


def test_7b_at_2048_fits_16gb(config_path, capsys):
    assert run_cli(str(config_path), "--gpu", "16GB", "--seq-len", "2048") == 0
    assert "GPU 16GB (14.901 GiB): fits" in capsys.readouterr().out


def test_not_fitting_exits_1(config_path, capsys):
    assert run_cli(str(config_path), "--gpu", "4GB") == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "nothing fits" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--gpu", "16 parsecs"], "parsecs"), (["--seq-len", "0"], "seq_len=0")],
)
def test_bad_input_exits_2_with_the_reason(config_path, capsys, argv, message):
    assert run_cli(str(config_path), *argv) == 2
    assert message in capsys.readouterr().err
