"""The package itself: a light import and a small public API."""

from __future__ import annotations

import json
import subprocess
import sys

import llama_lora

HEAVY = ("torch", "tensorflow", "keras", "trl", "matplotlib", "transformers")


def test_import_pulls_in_no_heavy_library():
    code = (
        "import json, sys, llama_lora; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []


def test_public_api_resolves_lazily():
    for name in ("prepare_model", "build_dataset", "Finetuner", "TrainingConfig", "evaluate"):
        assert name in llama_lora.__all__
        assert callable(getattr(llama_lora, name))
    try:
        llama_lora.not_a_name  # noqa: B018
    except AttributeError as err:
        assert "not_a_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
