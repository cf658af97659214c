"""Checkpoint files: atomic publication, discovery, rotation, RNG round trip, integrity."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.errors import IntegrityError
from llama_lora.training import Finetuner
from llama_lora.training import checkpoint as ckpt
from tests.training.helpers import quiet_config, tiny_lora_model, toy_data


def _fake_checkpoint(output_dir, step: int, complete: bool = True):
    staging = ckpt.begin_atomic_dir(output_dir / f"checkpoint-{step}")
    (staging / ckpt.STATE_FILE).write_text("{}")
    if complete:
        ckpt.commit_atomic_dir(staging, output_dir / f"checkpoint-{step}")
    return output_dir / f"checkpoint-{step}"


def test_newest_complete_checkpoint_wins_over_partial_ones(tmp_path):
    _fake_checkpoint(tmp_path, 5)
    _fake_checkpoint(tmp_path, 20)
    _fake_checkpoint(tmp_path, 30, complete=False)  # killed while staging
    (tmp_path / "checkpoint-40").mkdir()  # a directory without manifest is not complete
    (tmp_path / "checkpoint-40" / ckpt.STATE_FILE).write_text("{}")
    assert ckpt.find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-20"]


def test_kill_before_rename_publishes_nothing(tmp_path, monkeypatch):
    staging = ckpt.begin_atomic_dir(tmp_path / "checkpoint-7")
    (staging / ckpt.STATE_FILE).write_text("{}")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed at the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.commit_atomic_dir(staging, tmp_path / "checkpoint-7")
    assert not (tmp_path / "checkpoint-7").exists()
    assert ckpt.find_latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize(("limit", "kept"), [(2, [20, 30]), (1, [30]), (None, [5, 10, 20, 30])])
def test_rotation_keeps_the_newest(tmp_path, limit, kept):
    for step in (5, 10, 20, 30):
        _fake_checkpoint(tmp_path, step)
    ckpt.rotate_checkpoints(tmp_path, limit)
    assert [ckpt.checkpoint_step(p) for p in ckpt.list_checkpoints(tmp_path)] == kept


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save([ckpt.capture_rng_state()], tmp_path / ckpt.RNG_FILE)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ckpt.restore_rank_rng_state(tmp_path, process_index=0)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


@pytest.fixture(scope="module")
def one_step_checkpoint(tmp_path_factory, tokenizer):
    config = quiet_config(tmp_path_factory.mktemp("run"), max_steps=1)
    model = tiny_lora_model()
    Finetuner(model, tokenizer, config, data_collator=DataCollator(tokenizer)).fit(
        toy_data(tokenizer, validation=0)
    )
    return config.output_dir / "checkpoint-1"


def test_checkpoint_holds_every_piece(one_step_checkpoint):
    names = {p.name for p in one_step_checkpoint.iterdir()}
    expected = {"adapter_config.json", "adapter_model.safetensors", ckpt.OPTIMIZER_FILE}
    expected |= {ckpt.SCHEDULER_FILE, ckpt.RNG_FILE, ckpt.STATE_FILE, ckpt.MANIFEST_FILE}
    assert expected <= names
    for name in (ckpt.OPTIMIZER_FILE, ckpt.SCHEDULER_FILE, ckpt.RNG_FILE):
        torch.load(one_step_checkpoint / name, weights_only=True)  # no pickle needed
    state, config = ckpt.read_trainer_state(one_step_checkpoint)
    assert (state.step, state.epoch, state.batches_in_epoch) == (1, 0, 1)
    assert config["max_steps"] == 1


@pytest.mark.parametrize("victim", ["adapter_model.safetensors", ckpt.OPTIMIZER_FILE])
def test_tampered_checkpoint_is_refused_before_loading(
    tmp_path, tokenizer, one_step_checkpoint, victim
):
    import shutil

    copy = shutil.copytree(one_step_checkpoint, tmp_path / "checkpoint-1")
    with open(copy / victim, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    config = quiet_config(tmp_path, max_steps=2)
    finetuner = Finetuner(tiny_lora_model(), tokenizer, config, (), DataCollator(tokenizer))
    with pytest.raises(IntegrityError, match=victim):
        finetuner.fit(toy_data(tokenizer, validation=0), resume_from_checkpoint=copy)


def test_resume_from_a_missing_path_is_an_error(tmp_path, tokenizer):
    config = quiet_config(tmp_path, max_steps=2)
    finetuner = Finetuner(tiny_lora_model(), tokenizer, config, (), DataCollator(tokenizer))
    with pytest.raises(FileNotFoundError, match="checkpoint-9"):
        finetuner.fit(toy_data(tokenizer, validation=0), tmp_path / "checkpoint-9")
