"""The planner against real models built and stepped on the CPU.

Each case saves a random-init checkpoint, loads it through transformers + bitsandbytes (0.50
quantizes on the CPU), keeps norms in fp32 for quantized bases, attaches peft LoRA (r=16) to
all linear layers, runs a bf16-autocast forward while recording what autograd saves, backward,
and one optimizer step. Parameter, gradient and optimizer bytes must equal the plan exactly;
the saved activations of every block after the first must equal the activation formulas.
"""

from __future__ import annotations

import pytest

from llama_lora.planning import model_shape, plan_memory
from tests.planning.builders import (
    SavedTensorRecorder,
    count_model_bytes,
    forward_loss,
    gradient_bytes,
    load_lora_model,
    make_optimizer,
    optimizer_device_bytes,
    save_checkpoint,
)

PLAN_FIELDS = {
    "quantized": "quantized_weight_bytes",
    "constants": "quantization_constant_bytes",
    "unquantized": "unquantized_weight_bytes",
    "norms": "norm_bytes",
    "lora": "lora_bytes",
    "buffers": "buffer_bytes",
}
CASES = [
    # (shape, quantization, optimizer, gradient checkpointing)
    ("tiny-llama", "nf4", "adamw", False),
    ("tiny-llama", "fp4", "adamw_8bit", True),
    ("tiny-llama", "int8", "paged_adamw_8bit", False),
    ("tiny-llama", None, "adamw", False),
    ("cpu-small", "nf4", "adamw", False),
]
BATCH, SEQ = 2, 16
LORA_R = 16


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One saved checkpoint per shape, written on first use."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = save_checkpoint(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


@pytest.fixture(scope="module", params=CASES, ids=lambda case: "-".join(map(str, case)))
def measured(request, checkpoints):
    """Build, run and step one case; return the plan and everything counted on the model."""
    shape, quantization, optimizer, checkpointing = request.param
    directory = checkpoints(shape)
    plan = plan_memory(
        directory,
        quantization=quantization,
        lora_r=LORA_R,
        optimizer=optimizer,
        seq_len=SEQ,
        batch_size=BATCH,
        gradient_checkpointing=checkpointing,
    )
    model = load_lora_model(directory, quantization, lora_r=LORA_R, checkpointing=checkpointing)
    counted = count_model_bytes(model)
    recorder = SavedTensorRecorder(model)
    loss = forward_loss(model, BATCH, SEQ, model.config.vocab_size, recorder=recorder)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer_instance = make_optimizer(optimizer, trainable)
    optimizer_instance.step()
    return {
        "case": request.param,
        "plan": plan,
        "shape": model_shape(directory),
        "counted": counted,
        "saved": recorder.per_layer,
        "gradients": gradient_bytes(model),
        "optimizer": optimizer_device_bytes(optimizer_instance),
    }


@pytest.mark.slow
def test_parameter_bytes_per_category_are_exact(measured):
    plan = measured["plan"]
    predicted = {category: getattr(plan, field) for category, field in PLAN_FIELDS.items()}
    assert measured["counted"] == predicted


@pytest.mark.slow
def test_gradient_and_optimizer_bytes_are_exact(measured):
    plan = measured["plan"]
    assert measured["gradients"] == plan.lora_gradient_bytes
    assert measured["optimizer"] == plan.optimizer_bytes


@pytest.mark.slow
def test_saved_activations_per_block_match_the_formulas(measured):
    _, quantization, _, checkpointing = measured["case"]
    if quantization == "int8":
        pytest.skip("int8 trains through MatMul8bitFp on the CPU; the plan models CUDA's kernel")
    plan, shape = measured["plan"], measured["shape"]
    # Block 0's input is the frozen embedding output (no grad without checkpointing), so its
    # first norm saves nothing; every later block must match the formula byte for byte.
    later_blocks = {f"layer{i}" for i in range(1, shape.num_layers)}
    saved = {name: size for name, size in measured["saved"].items() if name in later_blocks}
    assert set(saved) == later_blocks
    if checkpointing:
        expected = plan.checkpoint_bytes_per_layer
    else:
        expected = plan.activation_bytes_per_layer
    assert set(saved.values()) == {expected}


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["nf4", None])
def test_plan_matches_prepare_model_on_the_tiny_preset(quantization):
    from llama_lora.model.loading import prepare_model

    model, _ = prepare_model(
        "tiny-llama", quantization=quantization, lora_r=LORA_R, compute_dtype="bf16"
    )
    plan = plan_memory("tiny-llama", quantization=quantization, lora_r=LORA_R)
    predicted = {category: getattr(plan, field) for category, field in PLAN_FIELDS.items()}
    assert count_model_bytes(model) == predicted


@pytest.mark.slow
def test_the_fused_lora_path_keeps_no_more_than_planned(checkpoints):
    """``fit`` trains through model/fused_lora.py: per block it keeps what peft's path keeps
    except the dropout masks, replaced by the dropped positions (int32, p = 0.05 here), so the
    plan (which counts a 1-byte mask per adapter input element) bounds it from above, by at most
    the masks."""
    from llama_lora.model.fused_lora import fused_lora_forward

    directory = checkpoints("cpu-small")
    plan = plan_memory(directory, quantization="nf4", lora_r=LORA_R, seq_len=SEQ, batch_size=BATCH)
    shape = model_shape(directory)
    model = load_lora_model(directory, "nf4", lora_r=LORA_R)
    recorder = SavedTensorRecorder(model)
    with fused_lora_forward(model):
        forward_loss(model, BATCH, SEQ, model.config.vocab_size, recorder=recorder)
    masks = BATCH * SEQ * sum(linear.in_features for linear in shape.layer_linears())
    for index in range(1, shape.num_layers):
        saved = recorder.per_layer[f"layer{index}"]
        assert plan.activation_bytes_per_layer - masks < saved < plan.activation_bytes_per_layer
