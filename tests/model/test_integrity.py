"""sha256 manifests: every weight is verified before anything loads it."""

from __future__ import annotations

import json
import shutil

import pytest

from llama_lora.errors import IntegrityError
from llama_lora.model.integrity import load_manifest, verify_checkpoint, write_manifest
from llama_lora.model.loading import prepare_model


@pytest.fixture
def checkpoint(tmp_path, tiny_checkpoint):
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


@pytest.mark.parametrize("form", ["sha256sum", "json", "dict"])
def test_manifest_forms_verify(checkpoint, tmp_path, form):
    if form == "dict":
        manifest = write_manifest(checkpoint)
    else:
        manifest = tmp_path / ("MANIFEST.json" if form == "json" else "SHA256SUMS")
        write_manifest(checkpoint, manifest)
    verified = verify_checkpoint(checkpoint, manifest)
    assert "model.safetensors" in verified and "config.json" in verified


def test_sha256sum_format_matches_coreutils(checkpoint, tmp_path):
    import hashlib

    manifest = load_manifest(_write(tmp_path / "sums", write_manifest(checkpoint)))
    digest = hashlib.sha256((checkpoint / "config.json").read_bytes()).hexdigest()
    assert manifest["config.json"] == digest


def _write(path, manifest):
    path.write_text("".join(f"{d} *{n}\n" for n, d in manifest.items()))  # binary-mode marker
    return path


def test_tampered_byte_raises_before_any_weight_is_read(checkpoint, tmp_path, monkeypatch):
    manifest = write_manifest(checkpoint, tmp_path / "SHA256SUMS")
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))

    import safetensors
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("weights were read before verification")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden)
    monkeypatch.setattr(safetensors, "safe_open", forbidden)
    with pytest.raises(IntegrityError) as info:
        prepare_model(checkpoint, sha256=tmp_path / "SHA256SUMS")
    message = str(info.value)
    assert "model.safetensors" in message and manifest["model.safetensors"] in message


def test_missing_and_unlisted_files(checkpoint):
    manifest = write_manifest(checkpoint)
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match="tokenizer.json.*missing"):
        verify_checkpoint(checkpoint, manifest)
    manifest = write_manifest(checkpoint)
    shutil.copy(checkpoint / "model.safetensors", checkpoint / "extra.safetensors")
    with pytest.raises(IntegrityError, match="extra.safetensors.*not in the manifest"):
        verify_checkpoint(checkpoint, manifest)


@pytest.mark.parametrize(
    ("content", "message"),
    [("abc  model.safetensors\n", "not a 64-digit sha256"), ("justonefield\n", "line 1")],
)
def test_malformed_manifest(tmp_path, content, message):
    (tmp_path / "sums").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_manifest(tmp_path / "sums")


def test_json_manifest_with_files_key(checkpoint, tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"files": write_manifest(checkpoint)}))
    assert verify_checkpoint(checkpoint, tmp_path / "m.json")
