"""The same user script under `accelerate launch --multi_gpu` and `torchrun`, two CPU processes.

On a machine without GPUs both launchers must give two gloo processes that split every epoch
between them, end with identical adapters and leave all writing to rank 0. The accelerate run
trains QLoRA (NF4) from ``prepare_model``, whose default device map must give each rank its own
copy; the torchrun run checks the mathematics against one process taking the same 8 rows per
optimizer step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.training import Finetuner, TrainingConfig
from tests.training import distributed_fit
from tests.training.helpers import adapter_tensors, tiny_lora_model, toy_data

SCRIPT = Path(distributed_fit.__file__)
SAME_ON_ALL_RANKS = ("step", "train_loss", "grad_norm", "learning_rate", "val_loss")


def _free_port() -> int:
    with socket.socket() as sock:  # other test sessions may run in parallel: no fixed port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(launcher: str, tmp_path: Path, checkpoint: Path | None) -> list[dict]:
    """Run the script with two processes; return the two ranks' records."""
    port = str(_free_port())
    if launcher == "accelerate":
        launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launch += ["--main_process_port", port]
    else:
        launch = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    args = [str(SCRIPT), str(tmp_path / "run"), str(tmp_path / "records")]
    args += [str(checkpoint)] if checkpoint else []
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [sys.executable, *launch, *args], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((tmp_path / "records" / f"rank{r}.json").read_text()) for r in (0, 1)]


def _adapters(tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return [load_file(tmp_path / "records" / f"adapter-rank{r}.safetensors") for r in (0, 1)]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, tokenizer):
    """One process, batch 8: the same rows per optimizer step as 2 ranks x 2 x 2."""
    settings = dict(distributed_fit.SETTINGS, batch_size=8, gradient_accumulation_steps=1)
    config = TrainingConfig(tmp_path_factory.mktemp("single"), progress_bar=False, **settings)
    model = tiny_lora_model()
    data = toy_data(tokenizer, distributed_fit.TRAIN_ROWS, distributed_fit.VALIDATION_ROWS)
    result = Finetuner(model, tokenizer, config, data_collator=DataCollator(tokenizer)).fit(data)
    return result, adapter_tensors(model)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_cpu_processes(tmp_path, request, launcher):
    qlora = launcher == "accelerate"
    checkpoint = request.getfixturevalue("tiny_checkpoint") if qlora else None
    records = _launch(launcher, tmp_path, checkpoint)
    assert [r["world_size"] for r in records] == [2, 2]
    assert [r["devices"] for r in records] == [["cpu"], ["cpu"]]  # a full copy per rank

    adapters = _adapters(tmp_path)
    for name, tensor in adapters[0].items():
        assert torch.equal(tensor, adapters[1][name]), name

    per_epoch = distributed_fit.TRAIN_ROWS // 2
    for epoch in range(2):
        window = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        rows = [key for record in records for key in record["seen_rows"][window]]
        assert sorted(rows) == list(range(distributed_fit.TRAIN_ROWS))  # each row once

    assert records[1]["writes"] == []  # only rank 0 writes
    output_dir = tmp_path / "run"
    assert (output_dir / "checkpoint-4" / "adapter_model.safetensors").is_file()
    assert (output_dir / "summary.json").is_file() and (output_dir / "metrics.jsonl").is_file()
    logged = [[{k: h.get(k) for k in SAME_ON_ALL_RANKS} for h in r["history"]] for r in records]
    assert logged[0] == logged[1]  # reduced across ranks: every rank logs the same numbers
    if qlora:
        val_losses = [h["val_loss"] for h in records[0]["history"] if "val_loss" in h]
        assert val_losses[-1] < val_losses[0]
    else:
        _assert_matches_single_process(records[0], adapters[0], request)


def _assert_matches_single_process(record: dict, adapter: dict, request) -> None:
    """Losses normalised over both ranks' target tokens, and the validation loss without
    accelerate's padding duplicates, equal those of one process on the same rows."""
    reference, reference_adapter = request.getfixturevalue("single_process")
    for mine, theirs in zip(record["history"], reference.history, strict=True):
        for key in ("train_loss", "val_loss"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-5), (key, mine["step"])
    assert record["train_tokens"] == reference.train_tokens
    for name, tensor in reference_adapter.items():
        torch.testing.assert_close(adapter[name], tensor, rtol=1e-4, atol=1e-6)
