"""Load a tokenizer and give it a pad token that is not EOS.

LLaMA tokenizers ship without a pad token. The common fix, ``pad_token = eos_token``, is a
trap: collators mask pad positions out of the labels, so every EOS is masked too and the model
never learns to stop. We use ``<unk>`` instead (LLaMA-1/2 have it, it never occurs in real text,
and reusing it needs no new embedding row); failing that a reserved pad token from the vocabulary;
only as a last resort a new ``<pad>`` token (the caller must then resize the embeddings).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Reserved tokens that some LLaMA-family vocabularies (e.g. LLaMA-3.1) set aside for padding.
_RESERVED_PAD_TOKENS = ("<pad>", "<|finetune_right_pad_id|>", "<|pad|>")


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False):
    """Load the tokenizer of a checkpoint directory, ready for training.

    Padding side is right for training (causal LM labels line up); generation code switches to
    left padding itself.

    Returns:
        A ``transformers`` tokenizer whose ``pad_token_id`` differs from ``eos_token_id``.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer)
    tokenizer.padding_side = "right"
    return tokenizer


def ensure_pad_token(tokenizer) -> bool:
    """Give ``tokenizer`` a pad token distinct from EOS, in place.

    Returns:
        True when a new token had to be added (the model's embeddings must then be resized).
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return False
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != eos:
        tokenizer.pad_token = tokenizer.unk_token
        return False
    vocab = tokenizer.get_vocab()
    for token in _RESERVED_PAD_TOKENS:
        if token in vocab and vocab[token] != eos:
            tokenizer.pad_token = token
            return False
    logger.warning("tokenizer has no pad, unk or reserved pad token; adding '<pad>'")
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    return True
