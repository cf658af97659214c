"""plan_memory and suggest from configs alone: the 7B case, invariants, inputs and errors."""

from __future__ import annotations

import json

import pytest
from transformers import LlamaConfig

from llama_lora.planning import (
    MemoryPlan,
    ModelShape,
    model_shape,
    parse_bytes,
    plan_memory,
    suggest,
)
from llama_lora.planning.budget import GIB, format_gib

LLAMA2_7B = LlamaConfig(
    hidden_size=4096,
    num_hidden_layers=32,
    intermediate_size=11008,
    vocab_size=32000,
    num_attention_heads=32,
    num_key_value_heads=32,
    tie_word_embeddings=False,
)


def plan_7b(**overrides) -> MemoryPlan:
    settings = {"quantization": "nf4", "lora_r": 16, "seq_len": 2048, "batch_size": 1}
    return plan_memory(LLAMA2_7B, **{**settings, **overrides})


def test_llama2_7b_qlora_fits_16gb_with_checkpointing():
    plan = plan_7b(gradient_checkpointing=True)
    assert plan.fits("16GB")
    assert plan.fits(16 * 10**9)
    assert plan.settings["parameters"] == 6_738_415_616  # LLaMA-2-7B's published count
    # 4-bit weights: half a byte per linear weight, plus 1 byte per 64 for the absmax
    linear_numel = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert plan.quantized_weight_bytes == linear_numel // 2
    assert linear_numel // 64 < plan.quantization_constant_bytes < linear_numel // 60
    assert plan.unquantized_weight_bytes == 2 * 32000 * 4096 * 2  # bf16 embeddings + lm_head
    lora_numel = 32 * 16 * (4 * 2 * 4096 + 3 * (4096 + 11008))
    assert plan.lora_bytes == plan.lora_gradient_bytes == 4 * lora_numel
    assert plan.optimizer_bytes == 8 * lora_numel


def test_llama2_7b_without_checkpointing_does_not_fit_16gb():
    assert not plan_7b(gradient_checkpointing=False).fits("16GB")


def test_total_is_the_sum_of_the_rows_alive_at_the_peak():
    for plan in (plan_7b(), plan_7b(gradient_checkpointing=False)):
        alive = (
            plan.logits_bytes if plan.peak_phase == "loss backward" else plan.backward_working_bytes
        )
        assert plan.logits_bytes != plan.backward_working_bytes
        assert alive == max(plan.logits_bytes, plan.backward_working_bytes)
        static = (
            plan.weight_bytes + plan.lora_bytes + plan.lora_gradient_bytes + plan.optimizer_bytes
        )
        expected = static + plan.activation_bytes + alive + plan.overhead_bytes
        assert plan.total_bytes == expected
        assert plan.tensor_bytes == expected - plan.overhead_bytes


@pytest.mark.parametrize(
    ("setting", "smaller", "larger", "field"),
    [
        ("seq_len", 1024, 2048, "activation_bytes"),
        ("seq_len", 1024, 2048, "logits_bytes"),
        ("batch_size", 1, 4, "activation_bytes"),
        ("batch_size", 1, 4, "backward_working_bytes"),
        ("lora_r", 8, 64, "lora_bytes"),
        ("lora_r", 8, 64, "activation_bytes_per_layer"),
        ("gradient_checkpointing", True, False, "activation_bytes"),
        ("optimizer", "adamw_8bit", "adamw", "optimizer_bytes"),
        ("quantization", "nf4", "int8", "quantized_weight_bytes"),
        ("quantization", "int8", None, "quantized_weight_bytes"),
        ("compute_dtype", "bf16", "fp32", "unquantized_weight_bytes"),
    ],
)
def test_more_demanding_settings_need_more_memory(setting, smaller, larger, field):
    low, high = plan_7b(**{setting: smaller}), plan_7b(**{setting: larger})
    assert getattr(low, field) < getattr(high, field)
    assert low.total_bytes < high.total_bytes


@pytest.mark.parametrize("optimizer", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_optimizer_states_are_about_a_quarter_of_adamw(optimizer):
    ratio = plan_7b(optimizer=optimizer).optimizer_bytes / plan_7b().optimizer_bytes
    assert 0.25 < ratio < 0.27  # uint8 instead of fp32, plus one fp32 absmax per 256


def test_checkpointing_keeps_only_block_inputs():
    plan = plan_7b(seq_len=512)
    assert plan.checkpoint_bytes_per_layer == 512 * 4096 * 4  # fp32 residual stream
    assert plan.activation_bytes_per_layer > 10 * plan.checkpoint_bytes_per_layer
    no_checkpointing = plan_7b(seq_len=512, gradient_checkpointing=False)
    assert no_checkpointing.activation_bytes == 32 * plan.activation_bytes_per_layer


def test_fewer_target_modules_mean_fewer_lora_bytes():
    attention_only = plan_7b(target_modules=["q_proj", "v_proj"])
    assert attention_only.lora_bytes == 4 * 32 * 16 * 2 * (4096 + 4096)
    assert attention_only.activation_bytes_per_layer < plan_7b().activation_bytes_per_layer


def test_table_lists_every_term_in_gib():
    text = plan_7b().table()
    for label in ("linear weights (nf4)", "quantization constants", "LoRA gradients", "total"):
        assert label in text
    assert f"{plan_7b().total_bytes / GIB:.3f} GiB" in text
    assert "(not alive at the peak)" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16GB", 16 * 10**9),
        ("16GiB", 16 * 2**30),
        ("16 gib", 16 * 2**30),
        ("1.5e10", 15 * 10**9),
        ("512MiB", 2**29),
        (24 * 10**9, 24 * 10**9),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "message"), [("16 GX", "GX"), ("-1GB", "-1GB"), ("", "''")])
def test_parse_bytes_rejects_bad_sizes(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bytes(text)


def test_fits_depends_on_the_budget_unit():
    plan = plan_7b()
    assert plan.fits(plan.total_bytes)
    assert not plan.fits(plan.total_bytes - 1)


@pytest.mark.parametrize(
    ("argument", "value", "choices"),
    [
        ("quantization", "nf5", "nf4"),
        ("optimizer", "sgd", "adamw_8bit"),
        ("compute_dtype", "fp8", "bf16"),
        ("target_modules", ["qkv"], "q_proj"),
        ("seq_len", 0, "positive"),
        ("batch_size", 1.5, "positive"),
        ("lora_r", -4, "positive"),
    ],
)
def test_bad_arguments_name_the_value_and_the_choices(argument, value, choices):
    with pytest.raises(ValueError, match=rf"{argument}.*{choices}|{choices}.*{argument}"):
        plan_7b(**{argument: value})


def test_config_sources_agree(tmp_path, monkeypatch):
    """A config object, a config.json, its directory and a cached hub id give one shape."""
    LLAMA2_7B.save_pretrained(tmp_path / "checkpoint")
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--llama-7b" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((tmp_path / "checkpoint" / "config.json").read_text())
    (cache / "models--acme--llama-7b" / "refs").mkdir()
    (cache / "models--acme--llama-7b" / "refs" / "main").write_text("0" * 40)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    sources = [LLAMA2_7B, tmp_path / "checkpoint", tmp_path / "checkpoint" / "config.json"]
    shapes = {model_shape(source) for source in [*sources, "acme/llama-7b"]}
    assert len(shapes) == 1


def test_tiny_preset_is_planned_from_its_config():
    from llama_lora.model.presets import TinyLlamaSpec

    shape = model_shape("tiny-llama")
    assert (shape.hidden_size, shape.num_kv_heads, shape.vocab_size) == (
        TinyLlamaSpec.hidden_size,
        TinyLlamaSpec.num_key_value_heads,
        TinyLlamaSpec.vocab_size,
    )


@pytest.mark.parametrize("source", ["nobody/not-cached-model", "./missing/dir", 42])
def test_unknown_models_raise_value_error(source, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=str(source).lstrip("./")):
        model_shape(source)


def test_config_without_llama_fields_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    with pytest.raises(ValueError, match="intermediate_size"):
        model_shape(tmp_path)


def test_shape_rejects_heads_that_do_not_group():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        ModelShape("llama", 64, 2, 128, num_heads=4, num_kv_heads=3, head_dim=16, vocab_size=320)


def test_suggest_finds_the_largest_fitting_micro_batch():
    best = suggest(LLAMA2_7B, "16GB", seq_len=2048)
    assert best.plan.fits("16GB")
    assert best.plan.settings["batch_size"] == best.batch_size
    for checkpointing in (False, True):
        for optimizer in ("adamw", "adamw_8bit"):
            bigger = plan_7b(
                batch_size=best.batch_size + 1,
                gradient_checkpointing=checkpointing,
                optimizer=optimizer,
            )
            assert not bigger.fits("16GB")


def test_suggest_prefers_no_checkpointing_when_it_fits_the_same_batch():
    best = suggest("tiny-llama", "16GB", seq_len=128, max_batch_size=4)
    assert (best.batch_size, best.gradient_checkpointing, best.optimizer) == (4, False, "adamw")


def test_suggest_needs_checkpointing_for_7b_at_2048_on_16gb():
    best = suggest(LLAMA2_7B, "16GB", seq_len=2048)
    assert best.gradient_checkpointing
    assert best.batch_size >= 1


def test_suggest_raises_when_nothing_fits():
    with pytest.raises(ValueError, match="nothing fits"):
        suggest(LLAMA2_7B, "4GB", seq_len=2048)


def test_docs_show_the_current_7b_breakdown():
    """docs/memory.md pastes this table; a formula change must update the page too."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "memory.md"
    assert plan_7b().table() in page.read_text()


def test_partial_recomputation_spans_the_two_extremes():
    peaks = [plan_7b(seq_len=2048, recomputed_layers=k).total_bytes for k in range(33)]
    assert peaks[0] == plan_7b(seq_len=2048, gradient_checkpointing=False).total_bytes
    assert peaks[32] == plan_7b(seq_len=2048, gradient_checkpointing=True).total_bytes
    assert all(more > fewer for more, fewer in zip(peaks[:-1], peaks[1:], strict=True))
    # gradient_checkpointing="auto" on a 16 GiB GPU (90% budget): 15 of 32 blocks recomputed
    budget = 0.9 * 16 * 2**30
    assert next(k for k, peak in enumerate(peaks) if peak <= budget) == 15
    assert format_gib(peaks[15]) == "14.208 GiB"


@pytest.mark.parametrize("value", [-1, 33, 1.5, True])
def test_recomputed_layers_outside_the_blocks_is_rejected(value):
    with pytest.raises(ValueError, match=rf"recomputed_layers={value!r}.*\[0, 32\]"):
        plan_7b(recomputed_layers=value)
