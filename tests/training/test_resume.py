"""Exact resume: a run killed after step k and resumed ends bit-identical to an uninterrupted one.

The kill is an exception raised from a callback two steps after the last checkpoint (so the
resumed run must redo work), with a half-written staging directory left behind as a kill during
a save would. Dropout is on, evaluation interleaves, and the checkpoint sits mid-epoch, so the
RNG streams, the data position and the per-epoch shuffle all have to be restored exactly.
"""

from __future__ import annotations

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.training import Callback, Finetuner
from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model, toy_data

KEYS = ("step", "epoch", "train_loss", "learning_rate", "grad_norm", "val_loss")


class Killed(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state, metrics):
        if state.step == self.step:
            raise Killed(f"killed after step {state.step}")


def run(tokenizer, config, callbacks=(), resume=None):
    model = tiny_lora_model(lora_dropout=0.1)
    finetuner = Finetuner(model, tokenizer, config, callbacks, DataCollator(tokenizer))
    result = finetuner.fit(toy_data(tokenizer, train=16, validation=4), resume)
    return result, adapter_tensors(model)


@pytest.mark.parametrize(
    ("batch_size", "accumulation", "precision", "resume_with_path"),
    [(4, 1, "no", False), (2, 2, "auto", True)],
    ids=["batch4-fp32-newest", "batch2x2-bf16-path"],
)
def test_resume_is_bit_identical(
    tmp_path, tokenizer, batch_size, accumulation, precision, resume_with_path
):
    settings = dict(
        num_epochs=2,  # 4 optimizer steps per epoch
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        mixed_precision=precision,
        save_steps=3,  # checkpoint-3 is mid-epoch
        eval_steps=2,
        save_total_limit=None,
    )
    reference, reference_adapter = run(tokenizer, quiet_config(tmp_path / "straight", **settings))

    config = quiet_config(tmp_path / "killed", **settings)
    with pytest.raises(Killed):
        run(tokenizer, config, callbacks=[KillAt(5)])
    stale = config.output_dir / ".tmp-checkpoint-6"  # a save interrupted half-way
    stale.mkdir()
    (stale / "adapter_model.safetensors").write_bytes(b"partial")
    checkpoint = config.output_dir / "checkpoint-3"
    resumed, resumed_adapter = run(
        tokenizer, config, resume=checkpoint if resume_with_path else True
    )

    assert resumed.global_step == reference.global_step == 8
    for name, tensor in reference_adapter.items():
        assert torch.equal(resumed_adapter[name], tensor), name
    project = [{k: r.get(k) for k in KEYS} for r in resumed.history]
    assert project == [{k: r.get(k) for k in KEYS} for r in reference.history]
    assert not stale.exists()  # the next save at step 6 replaced it


def test_resume_true_without_checkpoint_starts_fresh_and_after_the_end_does_nothing(
    tmp_path, tokenizer
):
    config = quiet_config(tmp_path, max_steps=2, save_steps=2)
    first, first_adapter = run(tokenizer, config, resume=True)  # nothing to resume: fresh
    again, again_adapter = run(tokenizer, config, resume=True)  # resumes the finished run
    assert first.global_step == again.global_step == 2
    assert again.history == first.history  # no step, evaluation or log record added
    assert all(torch.equal(again_adapter[n], t) for n, t in first_adapter.items())
