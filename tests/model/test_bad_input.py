"""Bad model arguments get a clear error naming the value and the choices."""

from __future__ import annotations

import json
import shutil

import pytest

from llama_lora.model.loading import prepare_model


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        prepare_model(str(tmp_path / "nope" / "model"))


def test_no_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        prepare_model(tmp_path)


def test_not_a_causal_lm(tmp_path, tiny_checkpoint):
    shutil.copytree(tiny_checkpoint, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a causal language model"):
        prepare_model(tmp_path / "m")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "nf3"}, "choose one of"),
        ({"lora_r": 0}, "lora_r=0"),
        ({"lora_r": -4}, "lora_r=-4"),
        ({"lora_alpha": 0}, "lora_alpha"),
        ({"lora_dropout": 1.5}, "lora_dropout"),
        ({"compute_dtype": "fp8"}, "compute_dtype='fp8'"),
        ({"target_modules": ["q_proj", "qkv"]}, r"\['qkv'\] match no linear layer.*q_proj"),
    ],
)
def test_bad_arguments(tiny_checkpoint, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_model(tiny_checkpoint, **{"quantization": None, **kwargs})


def test_pickle_weights_refused_unless_allowed(tmp_path, tiny_checkpoint):
    import torch
    from safetensors.torch import load_file

    target = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, target)
    state = load_file(target / "model.safetensors")
    (target / "model.safetensors").unlink()
    torch.save(state, target / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        prepare_model(target, quantization=None)
    model, _ = prepare_model(target, quantization=None, allow_pickle=True)
    assert any(p.requires_grad for p in model.parameters())


def test_hub_id_offline_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE.*hf download"):
        prepare_model("someone/not-cached-model")
