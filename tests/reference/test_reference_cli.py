"""``python -m llama_lora.reference.train``: trains offline, prints the metric, writes files."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from llama_lora.reference import train  # noqa: E402

pytestmark = pytest.mark.slow

CASES = [
    # (model, files written, metric name in the summary)
    ("cnn", ["cnn.keras"], "accuracy"),
    ("lstm", ["lstm.keras"], "MSE"),
    ("gan", ["gan.keras", "gan_samples.png"], "discriminator accuracy"),
    ("rnn", ["rnn.keras", "rnn_vocabulary.json"], "accuracy"),
]


@pytest.mark.parametrize("model, files, metric", CASES, ids=[case[0] for case in CASES])
def test_train_cli_prints_metric_and_saves(request, tmp_path, capsys, model, files, metric):
    if model == "rnn":
        request.getfixturevalue("sentiment_sample")  # skips until the sample exists
    status = train.main([model, "--epochs", "1", "--output-dir", str(tmp_path), "--verbose", "0"])
    printed = capsys.readouterr().out
    assert status == 0
    assert re.search(rf"{model}: held-out {metric}[^=]* = \d", printed), printed
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    if "gan_samples.png" in files:
        assert (tmp_path / "gan_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv",
    [["vit"], ["cnn", "--epochs", "0"], ["lstm", "--batch-size", "-1"], ["rnn", "--mnist", "x"]],
    ids=["unknown-model", "zero-epochs", "negative-batch", "mnist-for-rnn"],
)
def test_train_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        train.main(argv)
    assert raised.value.code == 2
    assert "error" in capsys.readouterr().err
