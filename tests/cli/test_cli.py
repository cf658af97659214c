"""The llama-lora command line: run files, overrides, subcommands and their errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from llama_lora.cli.config import load_run_config
from llama_lora.cli.main import SUBCOMMANDS, main

RUN_FILE = """
model: {name: tiny-llama, quantization: nf4}
data: {task: sentiment, source: sample, max_length: 256}
training: {output_dir: OUT, max_steps: 2, batch_size: 4, logging_steps: 1, progress_bar: false}
evaluation: {before: true, num_samples: 4, batch_size: 4}
"""


@pytest.fixture
def run_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(RUN_FILE.replace("OUT", str(tmp_path / "out")))
    return path


def test_overrides_are_parsed_as_yaml(run_file):
    config = load_run_config(run_file, ["training.max_steps=3", "data.packing=true"])
    assert config.training["max_steps"] == 3 and config.data["packing"] is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.max_stepz=3"], r"unknown key training.max_stepz; valid keys .*'max_steps'"),
        (["model.rank=8"], r"unknown key model.rank; valid keys .*'lora_r'"),
        (["max_steps=3"], "must look like section.key=value"),
        (["optim.lr=1"], "must look like section.key=value"),
    ],
)
def test_bad_keys_name_the_key_and_the_valid_ones(run_file, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_run_config(run_file, overrides)


def test_unknown_section_and_missing_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: {name: tiny-llama}\noptimizer: {}\n")
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['optimizer'\]"):
        load_run_config(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "llama_lora.cli.main", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: llama-lora" in result.stdout


def test_verify_reports_ok_and_tampering(tiny_checkpoint, tmp_path, capsys):
    import shutil

    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    manifest = tmp_path / "SHA256SUMS"
    assert main(["verify", str(checkpoint), str(manifest), "--write"]) == 0
    assert main(["verify", str(checkpoint), str(manifest)]) == 0
    (checkpoint / "config.json").write_text("{}")
    assert main(["verify", str(checkpoint), str(manifest)]) == 1
    assert "config.json: sha256 mismatch" in capsys.readouterr().out


@pytest.mark.slow
def test_train_then_merge_end_to_end(run_file, tmp_path):
    assert main(["train", str(run_file)]) == 0
    out = tmp_path / "out"
    scores = json.loads((out / "eval_before_after.json").read_text())
    assert set(scores) == {"before", "after"}
    assert {"loss", "perplexity", "accuracy", "macro_f1"} <= set(scores["after"])
    assert all(math.isfinite(v) for v in scores["after"].values())
    assert (out / "eval" / "predictions.jsonl").is_file()
    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file(), sorted(p.name for p in out.iterdir())
    assert main(["merge", str(adapter), str(tmp_path / "merged"), "--dtype", "fp32"]) == 0
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.config.model_type == "llama"
