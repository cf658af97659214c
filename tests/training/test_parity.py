"""The loop computes the same mathematics as a plain PyTorch loop.

The reference below is the textbook recipe: transformers' own mean loss over the target tokens
of the whole batch, backward, clip, AdamW. ``Finetuner`` must reproduce its losses whether the
8 rows arrive as one batch or as micro-batches with gradient accumulation (where a per-micro-batch
mean would weight tokens unequally: the gradient-accumulation bug).
"""

from __future__ import annotations

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.training import Finetuner
from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model, toy_data

STEPS = 5
LEARNING_RATE = 1e-2
MAX_GRAD_NORM = 1.0


def reference_loop(model, rows, tokenizer) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Full-batch training with transformers' loss: the mathematics to match."""
    batch = DataCollator(tokenizer)(list(rows))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(STEPS):
        loss = model(**batch).loss  # mean over every target token of the 8 rows
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, adapter_tensors(model)


@pytest.fixture(scope="module")
def reference(tokenizer):
    data = toy_data(tokenizer, train=8, validation=0)
    return reference_loop(tiny_lora_model(seed=1), data["train"], tokenizer)


@pytest.mark.parametrize(("batch_size", "accumulation"), [(8, 1), (4, 2), (2, 4)])
def test_losses_match_plain_pytorch_loop(tmp_path, tokenizer, reference, batch_size, accumulation):
    reference_losses, reference_adapter = reference
    model = tiny_lora_model(seed=1)
    config = quiet_config(
        tmp_path,
        max_steps=STEPS,
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        lr_scheduler="constant",
        save_steps=STEPS,
        save_total_limit=1,
    )
    result = Finetuner(model, tokenizer, config, data_collator=DataCollator(tokenizer)).fit(
        toy_data(tokenizer, train=8, validation=0)
    )
    losses = [record["train_loss"] for record in result.history if "train_loss" in record]
    assert len(losses) == STEPS
    torch.testing.assert_close(
        torch.tensor(losses), torch.tensor(reference_losses), rtol=1e-4, atol=0
    )
    assert losses[-1] < losses[0]  # it trained
    for name, tensor in adapter_tensors(model).items():
        torch.testing.assert_close(tensor, reference_adapter[name], rtol=1e-3, atol=1e-5)
