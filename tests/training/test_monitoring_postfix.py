"""The progress-bar postfix skips values an interval could not average."""

from llama_lora.training.monitoring import _postfix


def test_postfix_skips_missing_loss():
    assert _postfix({"train_loss": None, "learning_rate": 0.001}) == {"lr": "0.001"}
