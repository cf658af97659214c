"""Finetuner.fit end to end on a tiny model: learning, files, early stopping, callbacks,
non-finite losses, optimizers and precision."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.model.integrity import verify_checkpoint
from llama_lora.training import Callback, Finetuner
from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model, toy_data


def fit(tokenizer, config, *, model=None, data=None, callbacks=(), **fit_kwargs):
    model = model if model is not None else tiny_lora_model()
    data = data if data is not None else toy_data(tokenizer)
    finetuner = Finetuner(model, tokenizer, config, callbacks, DataCollator(tokenizer))
    return finetuner.fit(data, **fit_kwargs), model


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tokenizer):
    """Four epochs with every sink on; shared by the tests that inspect its outputs."""
    output_dir = tmp_path_factory.mktemp("run")
    config = quiet_config(
        output_dir,
        num_epochs=4,
        learning_rate=3e-2,
        report_to=("tensorboard",),
        progress_bar=True,
        logging_steps=2,
    )
    model = tiny_lora_model()
    base_weight = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    before = base_weight.detach().clone()
    result, model = fit(tokenizer, config, model=model)
    return result, model, config, before, base_weight


def test_validation_loss_decreases(trained_run):
    result = trained_run[0]
    val_losses = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert len(val_losses) == 4  # one evaluation per epoch
    assert val_losses[-1] < 0.8 * val_losses[0]
    assert result.best_val_loss == min(val_losses)


def test_only_adapters_change(trained_run):
    _, _, _, before, base_weight = trained_run
    assert torch.equal(before, base_weight.detach())


def test_run_writes_its_files(trained_run):
    result, _, config, _, _ = trained_run
    out = config.output_dir
    for directory in (result.final_checkpoint, result.best_checkpoint):
        assert (directory / "adapter_config.json").is_file()
        assert (directory / "adapter_model.safetensors").is_file()
        verify_checkpoint(directory, directory / "manifest.json")
    assert result.final_checkpoint == out / "checkpoint-16"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-16"]
    best = json.loads((result.best_checkpoint / "best_metrics.json").read_text())
    assert best["val_loss"] == result.best_val_loss
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == result.global_step == 16
    assert summary["train_tokens"] == result.train_tokens
    assert summary["best_val_loss"] == result.best_val_loss
    assert summary["peak_memory_bytes"] > 0 and summary["tokens_per_second"] > 0
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_has_the_scalars(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _, config, _, _ = trained_run
    events = list((config.output_dir / "runs").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    expected = {"train/loss", "train/learning_rate", "train/grad_norm", "val/loss"}
    expected |= {"train/tokens_per_second", "train/peak_memory_bytes", "val/perplexity"}
    assert expected <= tags
    logged = [r["train_loss"] for r in result.history if "train_loss" in r]
    assert [e.value for e in accumulator.Scalars("train/loss")] == pytest.approx(logged)


def test_train_tokens_count_every_real_token(trained_run, tokenizer):
    result = trained_run[0]
    per_epoch = sum(len(ids) for ids in toy_data(tokenizer)["train"]["input_ids"])
    assert result.train_tokens == 4 * per_epoch


def test_saved_adapter_reloads_with_peft(trained_run, tokenizer):
    from peft import PeftModel

    _, model, _, _, _ = trained_run
    result = trained_run[0]
    fresh = tiny_lora_model().get_base_model()  # same seed: same base weights
    reloaded = PeftModel.from_pretrained(fresh, str(result.final_checkpoint)).eval()
    batch = DataCollator(tokenizer)(toy_data(tokenizer)["validation"].to_list()[:2])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits)


def test_early_stopping_stops(tmp_path, tokenizer):
    # A threshold no loss can beat: every evaluation after the first is "no improvement".
    config = quiet_config(
        tmp_path,
        num_epochs=5,
        eval_steps=1,
        early_stopping_patience=2,
        early_stopping_threshold=100.0,
    )
    result, _ = fit(tokenizer, config)
    assert result.stopped_early
    assert result.global_step == 3  # best at 1, then 2 evaluations without improvement
    assert result.final_checkpoint == tmp_path / "checkpoint-3"
    assert json.loads((tmp_path / "summary.json").read_text())["stopped_early"] is True


def test_early_stopping_without_validation_is_refused(tmp_path, tokenizer):
    config = quiet_config(tmp_path, early_stopping_patience=2)
    with pytest.raises(ValueError, match="early_stopping_patience"):
        fit(tokenizer, config, data=toy_data(tokenizer, validation=0))


def test_rows_without_labels_are_refused(tmp_path, tokenizer):
    data = toy_data(tokenizer)
    data["train"] = data["train"].remove_columns("labels")
    with pytest.raises(ValueError, match="labels"):
        fit(tokenizer, quiet_config(tmp_path), data=data)


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None):
        self.steps, self.evaluations, self.saves, self.stop_at = [], [], [], stop_at

    def on_step_end(self, state, metrics):
        self.steps.append((state.step, dict(metrics)))
        if state.step == self.stop_at:
            state.should_stop = True

    def on_evaluate(self, state, metrics):
        self.evaluations.append(metrics["val_loss"])

    def on_save(self, state, checkpoint_dir):
        self.saves.append((state.step, (checkpoint_dir / "manifest.json").is_file()))


def test_callbacks_see_steps_evaluations_and_saves(tmp_path, tokenizer):
    recorder = Recorder()
    config = quiet_config(tmp_path, num_epochs=2, logging_steps=3, eval_steps=2, save_steps=4)
    result, _ = fit(tokenizer, config, callbacks=[recorder])
    assert [step for step, _ in recorder.steps] == list(range(1, 9))
    logged = [step for step, metrics in recorder.steps if metrics]
    assert logged == [3, 4, 6, 8]  # every 3 steps, plus each checkpoint step
    history_val = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert recorder.evaluations == history_val and len(history_val) == 4
    assert recorder.saves == [(4, True), (8, True)]


def test_callback_can_stop_training(tmp_path, tokenizer):
    result, _ = fit(tokenizer, quiet_config(tmp_path, num_epochs=3), callbacks=[Recorder(2)])
    assert result.global_step == 2 and result.final_checkpoint == tmp_path / "checkpoint-2"


def _poison_logits(model, bad_calls):
    """Make the final hidden states NaN on the given (1-based) forward calls (the final norm
    feeds both the full-logit and the fused target-only loss)."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        return output * math.nan if calls["n"] in bad_calls else output

    return model.get_base_model().model.norm.register_forward_hook(hook)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, tokenizer):
    model = tiny_lora_model()
    snapshots = {}

    class Snapshot(Callback):
        def on_step_end(self, state, metrics):
            snapshots[state.step] = adapter_tensors(model)

    _poison_logits(model, bad_calls={2, 3})  # one forward per step: steps 2 and 3 go NaN
    config = quiet_config(tmp_path, num_epochs=2)
    data = toy_data(tokenizer, validation=0)
    result, _ = fit(tokenizer, config, model=model, data=data, callbacks=[Snapshot()])
    assert result.global_step == 8
    assert result.history[-1]["nonfinite_steps"] == 2
    for name, tensor in snapshots[1].items():
        assert torch.equal(snapshots[3][name], tensor)  # skipped: untouched
        assert not torch.equal(snapshots[4][name], tensor) or "lora_A" in name
    assert all(torch.isfinite(t).all() for t in adapter_tensors(model).values())
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    assert losses[1] is None and losses[2] is None and all(math.isfinite(v) for v in losses[3:])


def test_repeated_nonfinite_loss_raises_naming_step_and_causes(tmp_path, tokenizer):
    model = tiny_lora_model()
    _poison_logits(model, bad_calls=set(range(1, 100)))
    config = quiet_config(tmp_path, num_epochs=2, max_consecutive_nonfinite=3)
    with pytest.raises(RuntimeError, match=r"step 3\b.*fp16 overflow.*learning rate"):
        fit(tokenizer, config, model=model, data=toy_data(tokenizer, validation=0))
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize("optimizer", ["adamw_8bit", "paged_adamw_8bit"])
def test_bitsandbytes_optimizers_train(tmp_path, tokenizer, optimizer):
    model = tiny_lora_model()
    before = adapter_tensors(model)
    config = quiet_config(tmp_path, max_steps=2, optimizer=optimizer, save_steps=2)
    result, _ = fit(tokenizer, config, model=model, data=toy_data(tokenizer, validation=0))
    after = adapter_tensors(model)
    assert result.global_step == 2
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert all(torch.isfinite(t).all() for t in after.values())


def test_auto_precision_is_bf16_on_cpu_and_close_to_fp32(tmp_path, tokenizer):
    data = toy_data(tokenizer, validation=0)
    runs = {}
    for precision in ("auto", "no"):
        config = quiet_config(tmp_path / precision, max_steps=1, mixed_precision=precision)
        runs[precision], _ = fit(tokenizer, config, data=data)
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert summary["mixed_precision"] == "bf16"
    bf16_loss, fp32_loss = (runs[p].history[0]["train_loss"] for p in ("auto", "no"))
    assert bf16_loss == pytest.approx(fp32_loss, rel=2e-2) and bf16_loss != fp32_loss


def test_model_leaves_fit_without_the_autocast_wrapper(tmp_path, tokenizer):
    model = tiny_lora_model()
    config = quiet_config(tmp_path, max_steps=1, mixed_precision="bf16")
    fit(tokenizer, config, model=model, data=toy_data(tokenizer, validation=0))
    input_ids = torch.tensor([[1, 40, 41, 42, 43, 2]])
    model.eval()
    with torch.no_grad():
        called = model(input_ids=input_ids).logits
        unpatched = type(model).forward(model, input_ids=input_ids).logits  # the class's own
    assert torch.equal(called, unpatched)  # a leftover bf16 autocast wrapper would differ


def test_max_steps_crosses_epochs(tmp_path, tokenizer):
    config = quiet_config(tmp_path, num_epochs=1, max_steps=6, logging_steps=6)
    result, _ = fit(tokenizer, config, data=toy_data(tokenizer, validation=0))
    assert result.global_step == 6
    assert result.history[-1]["epoch"] == 1.5  # 4 steps per epoch


def test_qlora_from_prepare_model_lowers_validation_loss(tmp_path, tokenizer, tiny_checkpoint):
    """The product path: NF4 base + LoRA from prepare_model, default collator, auto precision."""
    from llama_lora.model.loading import prepare_model

    model, model_tokenizer = prepare_model(tiny_checkpoint, quantization="nf4", lora_dropout=0.0)
    config = quiet_config(tmp_path, num_epochs=3, learning_rate=3e-2, mixed_precision="auto")
    result = Finetuner(model, model_tokenizer, config).fit(toy_data(model_tokenizer))
    val_losses = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert val_losses[-1] < val_losses[0]
    assert (result.final_checkpoint / "adapter_model.safetensors").is_file()


def test_sentiment_sample_end_to_end(tmp_path, tiny_checkpoint):
    """QLoRA on the bundled sentiment sample, as in the README (skips until it is bundled)."""
    from llama_lora.data import build_dataset
    from llama_lora.model.loading import prepare_model

    model, tokenizer = prepare_model(tiny_checkpoint, quantization="nf4", lora_dropout=0.0)
    try:
        data = build_dataset("sentiment", "sample", tokenizer, max_length=128)
    except FileNotFoundError as error:
        pytest.skip(f"sentiment sample not bundled yet: {error}")
    config = quiet_config(tmp_path, max_steps=8, eval_steps=4, learning_rate=3e-2)
    result = Finetuner(model, tokenizer, config).fit(data)
    val_losses = [r["val_loss"] for r in result.history if "val_loss" in r]
    assert len(val_losses) == 2 and val_losses[-1] < val_losses[0]


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_fused_lora_trains_the_adapters_peft_trains(tmp_path, mixed_precision):
    """The fused LoRA forward (default) against peft's, with dropout, over three steps: the same
    losses, and adapters apart only by rounding (Adam's first steps are about sign(g) * lr, so
    rounding differences in near-zero gradient elements show up at lr scale)."""
    from llama_lora.model.fused_lora import _lora_layer_types
    from llama_lora.model.loading import prepare_model
    from llama_lora.training import Callback, Finetuner

    bf16 = mixed_precision == "bf16"

    def train(output_dir, fused, mixed_precision=mixed_precision):
        torch.manual_seed(0)  # the same initialisation and the same dropout positions
        model, tokenizer = prepare_model(
            "tiny-llama",
            quantization="nf4",
            lora_dropout=0.1,
            compute_dtype="bf16" if mixed_precision == "bf16" else "fp32",
        )
        losses = []

        class Losses(Callback):
            def on_step_end(self, state, metrics):
                losses.append(metrics["train_loss"])

        config = quiet_config(
            output_dir,
            max_steps=3,
            save_steps=10,
            mixed_precision=mixed_precision,
            fused_lora=fused,
            learning_rate=1e-3,
        )
        data = toy_data(tokenizer, train=12, validation=0)
        Finetuner(model, tokenizer, config, callbacks=[Losses()]).fit(data)
        layers = [m for m in model.modules() if type(m) in _lora_layer_types()]
        assert layers and all("forward" not in vars(m) for m in layers)  # handed back
        return losses, torch.cat([t.flatten() for t in adapter_tensors(model).values()])

    def distance(a, b):
        return float((a - b).norm() / b.norm())

    (fused_losses, fused), (losses, plain) = (
        train(tmp_path / "fused", True),
        train(tmp_path / "plain", False),
    )
    if not bf16:
        assert fused_losses == pytest.approx(losses, rel=1e-6)
        assert distance(fused, plain) < 1e-5
        return
    # In bf16 the two paths round in different places: their adapters must be closer to each
    # other than peft's bf16 adapters are to peft's fp32 ones.
    _, reference = train(tmp_path / "fp32", False, mixed_precision="no")
    assert fused_losses == pytest.approx(losses, rel=2e-3)
    assert distance(fused, plain) < distance(plain, reference)


def test_adapter_inputs_stay_in_the_compute_dtype_under_autocast_with_the_same_result(
    tmp_path, monkeypatch
):
    """peft's cast of each adapter input to fp32 is off during a bf16 fit, back on after, and
    the adapters train to the same values as with it."""
    import contextlib

    from peft.tuners.tuners_utils import BaseTunerLayer

    import llama_lora.training.finetuner as finetuner_module
    from llama_lora.model.loading import prepare_model
    from llama_lora.training import Callback, Finetuner

    def train(output_dir):
        torch.manual_seed(0)  # the same LoRA initialisation
        model, tokenizer = prepare_model("tiny-llama", quantization="nf4", lora_dropout=0.1)
        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        seen = set()

        class Watch(Callback):
            def on_step_end(self, state, metrics):
                seen.update(layer.cast_input_dtype_enabled for layer in layers)

        # peft's own forward (the fused one never casts adapter inputs)
        config = quiet_config(
            output_dir, max_steps=2, save_steps=10, mixed_precision="bf16", fused_lora=False
        )
        data = toy_data(tokenizer, train=8, validation=0)
        Finetuner(model, tokenizer, config, callbacks=[Watch()]).fit(data)
        assert all(layer.cast_input_dtype_enabled for layer in layers)  # handed back
        return adapter_tensors(model), seen

    trained, seen = train(tmp_path / "a")
    assert seen == {False}
    monkeypatch.setattr(finetuner_module, "_autocast_adapter_inputs", contextlib.nullcontext)
    expected, seen = train(tmp_path / "b")
    assert seen == {True}
    for name, tensor in expected.items():
        torch.testing.assert_close(trained[name], tensor, rtol=0, atol=0, msg=name)
