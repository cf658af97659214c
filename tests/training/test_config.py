"""TrainingConfig validation: every bad value fails early, naming its field."""

from __future__ import annotations

import json
import math

import pytest

from llama_lora.training import TrainingConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("output_dir", ""),
        ("num_epochs", 0),
        ("num_epochs", 1.5),
        ("max_steps", 0),
        ("learning_rate", 0.0),
        ("learning_rate", math.nan),
        ("learning_rate", "2e-4"),
        ("batch_size", 0),
        ("batch_size", True),
        ("gradient_accumulation_steps", 0),
        ("lr_scheduler", "step"),
        ("warmup_ratio", 1.0),
        ("warmup_ratio", -0.1),
        ("weight_decay", -1.0),
        ("max_grad_norm", 0.0),
        ("max_grad_norm", math.inf),
        ("optimizer", "sgd"),
        ("mixed_precision", "fp8"),
        ("eval_steps", 0),
        ("save_steps", -5),
        ("save_total_limit", 0),
        ("early_stopping_patience", 0),
        ("early_stopping_threshold", -0.5),
        ("logging_steps", 0),
        ("report_to", ("wandb",)),
        ("seed", -1),
        ("progress_bar", "yes"),
        ("max_consecutive_nonfinite", 0),
        ("dataloader_num_workers", -1),
    ],
)
def test_bad_value_raises_naming_the_field(tmp_path, field, value):
    values = {"output_dir": tmp_path, field: value}
    with pytest.raises(ValueError, match=rf"TrainingConfig\.{field}\b"):
        TrainingConfig(**values)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tensorboard", ("tensorboard",)),
        (["tensorboard"], ("tensorboard",)),
        ("none", ()),
        ((), ()),
    ],
)
def test_report_to_accepts_yaml_spellings(tmp_path, given, expected):
    assert TrainingConfig(output_dir=tmp_path, report_to=given).report_to == expected


def test_optional_fields_accept_none(tmp_path):
    config = TrainingConfig(
        output_dir=tmp_path,
        max_steps=None,
        eval_steps=None,
        save_steps=None,
        save_total_limit=None,
        early_stopping_patience=None,
        max_grad_norm=None,
    )
    assert config.max_grad_norm is None


def test_from_dict_rejects_unknown_key_listing_valid_ones(tmp_path):
    with pytest.raises(ValueError) as error:
        TrainingConfig.from_dict({"output_dir": tmp_path, "learning_rat": 1e-3})
    message = str(error.value)
    assert "learning_rat" in message and "learning_rate" in message and "batch_size" in message


def test_to_dict_round_trips_through_json(tmp_path):
    config = TrainingConfig(output_dir=tmp_path / "run", batch_size=8, report_to=())
    restored = TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
