"""``gradient_checkpointing="auto"``: ``fit`` recomputes only the blocks the memory plan needs."""

from __future__ import annotations

import logging

import pytest
import torch

from llama_lora.model.recompute import (
    checkpointing_layers,
    choose_recomputation,
    mark_auto,
    planned_peaks,
)
from llama_lora.planning import plan_memory
from llama_lora.training import Finetuner
from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model, toy_data

PLAN_SETTINGS = {"tokens": 4 * 16, "optimizer": "adamw", "mixed_precision": "no"}


def checkpointed_model(auto: bool, seed: int = 0):
    """The tiny LoRA model with every block checkpointed, as ``prepare_model`` leaves it."""
    model = tiny_lora_model(seed=seed, lora_dropout=0.1)
    base = model.get_base_model()
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if auto:
        mark_auto(base)
    return model


def test_planned_peaks_fall_with_every_recomputed_block():
    model = checkpointed_model(auto=True)
    peaks = planned_peaks(model, **PLAN_SETTINGS)
    assert len(peaks) == 3  # 0, 1 or 2 blocks recomputed
    assert peaks[0] > peaks[1] > peaks[2]
    plan = {"seq_len": 64, "lora_r": 8, "quantization": None, "compute_dtype": "fp32"}
    config = model.get_base_model().config
    assert peaks[0] == plan_memory(config, gradient_checkpointing=False, **plan).total_bytes
    assert peaks[2] == plan_memory(config, gradient_checkpointing=True, **plan).total_bytes


@pytest.mark.parametrize("fits", [0, 1, 2])
def test_the_fewest_recomputed_blocks_that_fit_are_chosen(fits):
    model = checkpointed_model(auto=True)
    peaks = planned_peaks(model, **PLAN_SETTINGS)
    decision = choose_recomputation(model, budget_bytes=peaks[fits], **PLAN_SETTINGS)
    assert (decision.recomputed_layers, decision.num_layers) == (fits, 2)
    assert decision.planned_bytes == peaks[fits] and decision.fits


def test_a_budget_nothing_fits_recomputes_everything_and_says_so():
    model = checkpointed_model(auto=True)
    decision = choose_recomputation(model, budget_bytes=1, **PLAN_SETTINGS)
    assert decision.recomputed_layers == 2 and not decision.fits


def test_adapters_on_layers_the_planner_does_not_know_keep_full_checkpointing():
    model = checkpointed_model(auto=True)
    model.peft_config["default"].target_modules = {"q_proj", "my_custom_proj"}
    assert planned_peaks(model, **PLAN_SETTINGS) is None


def block_calls_per_step(model, tmp_path, tokenizer, **config):
    """Fit 2 steps; per block, how often its MLP ran in each step (2 = recomputed).

    Counted in ``forward`` itself: module hooks do not fire in checkpoint's recomputation."""
    calls = [0] * 2
    for index, layer in enumerate(checkpointing_layers(model.get_base_model())):

        def counted(*args, index=index, forward=layer.mlp.forward, **kwargs):
            calls[index] += 1
            return forward(*args, **kwargs)

        layer.mlp.forward = counted
    config = quiet_config(tmp_path, max_steps=2, save_steps=10, **config)
    Finetuner(model, tokenizer, config).fit(toy_data(tokenizer, train=8, validation=0))
    return [count / 2 for count in calls]


def test_fit_recomputes_only_the_planned_blocks_and_hands_the_model_back(
    tmp_path, tokenizer, caplog
):
    model = checkpointed_model(auto=True)
    rows = toy_data(tokenizer, train=8, validation=0)["train"]
    tokens = 4 * max(len(ids) for ids in rows["input_ids"])
    settings = dict(PLAN_SETTINGS, tokens=tokens)
    budget = planned_peaks(model, **settings)[1]
    with caplog.at_level(logging.INFO, logger="llama_lora.training.setup"):
        calls = block_calls_per_step(model, tmp_path / "run", tokenizer, memory_budget=budget)
    assert calls == [2, 1]  # block 0 recomputed in backward, block 1 kept its activations
    assert "recomputing 1 of 2 blocks" in caplog.text
    layers = checkpointing_layers(model.get_base_model())
    assert all(layer.gradient_checkpointing for layer in layers)


def test_ample_memory_recomputes_nothing_and_explicit_checkpointing_is_kept(tmp_path, tokenizer):
    auto = block_calls_per_step(checkpointed_model(auto=True), tmp_path / "a", tokenizer)
    explicit = block_calls_per_step(checkpointed_model(auto=False), tmp_path / "b", tokenizer)
    assert auto == [1, 1]  # the default budget (90% of RAM) holds every activation
    assert explicit == [2, 2]  # gradient_checkpointing=True is not second-guessed


def test_partial_recomputation_trains_the_same_adapters(tmp_path, tokenizer):
    """Recomputation (dropout masks included) must not change the mathematics."""
    full = checkpointed_model(auto=False)
    partial = checkpointed_model(auto=True)
    rows = toy_data(tokenizer, train=8, validation=0)["train"]
    tokens = 4 * max(len(ids) for ids in rows["input_ids"])
    budget = planned_peaks(partial, **dict(PLAN_SETTINGS, tokens=tokens))[1]
    block_calls_per_step(full, tmp_path / "full", tokenizer)
    block_calls_per_step(partial, tmp_path / "partial", tokenizer, memory_budget=budget)
    expected, trained = adapter_tensors(full), adapter_tensors(partial)
    assert trained.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(trained[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_bad_settings_name_the_value_and_the_choices(tmp_path):
    from llama_lora.model.loading import prepare_model

    with pytest.raises(
        ValueError, match=r"gradient_checkpointing='sometimes'.*True, False, 'auto'"
    ):
        prepare_model("tiny-llama", gradient_checkpointing="sometimes")
    with pytest.raises(ValueError, match=r"memory_budget.*'16 bananas'.*unknown unit"):
        quiet_config(tmp_path, memory_budget="16 bananas")


def test_prepare_model_defaults_to_auto_with_every_block_checkpointed_until_fit():
    from llama_lora.model.loading import prepare_model
    from llama_lora.model.recompute import is_auto

    model, _ = prepare_model("tiny-llama", quantization=None, compute_dtype="fp32")
    base = model.get_base_model()
    assert is_auto(base)
    assert all(layer.gradient_checkpointing for layer in checkpointing_layers(base))
    explicit, _ = prepare_model("tiny-llama", quantization=None, gradient_checkpointing=True)
    assert not is_auto(explicit.get_base_model())
