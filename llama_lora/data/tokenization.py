"""Prompt/response text -> ``input_ids``, ``attention_mask`` and masked ``labels``.

The prompt and the response are tokenized separately and concatenated, so the prompt tokens the
model is trained after are exactly the ones it is given at generation time (tokenizing the joint
text could merge tokens across the boundary, e.g. SentencePiece's ``▁``). Special tokens come
from the tokenizer itself (its BOS, once, at the start), then EOS is appended to every target so
the model learns to stop. Labels are -100 over the prompt unless ``train_on_inputs``.

When an example is longer than ``max_length`` the cuttable prompt field (context, document,
input, review text) is shortened, never the response; an example whose response does not fit
even with that field empty is dropped, and counted by the caller.

(This module is not called ``tokenize.py`` so that it can never shadow the standard library's
``tokenize`` module.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE_INDEX = -100  # the label value torch's cross-entropy skips
OUTPUT_COLUMNS = ("input_ids", "attention_mask", "labels", "prompt", "_truncated", "_too_long")
_MAX_CUT_ROUNDS = 32


def token_features():
    """The ``datasets.Features`` of a tokenized split (with the helper flag columns).

    Fixed explicitly so every split, an empty one included, has the same columns and types.
    """
    from datasets import Features, List, Value

    return Features(
        {
            "input_ids": List(Value("int32")),
            "attention_mask": List(Value("int8")),
            "labels": List(Value("int32")),
            "prompt": Value("string"),
            "response": Value("string"),
            "references": List(Value("string")),
            "_truncated": Value("bool"),
            "_too_long": Value("bool"),
        }
    )


def special_prefix(tokenizer) -> list[int]:
    """The token ids the tokenizer puts before the text (``[bos_id]`` for LLaMA, maybe [])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


@dataclass
class ExampleTokenizer:
    """``datasets.map`` function (batched) from normalized text columns to token columns.

    Attributes:
        tokenizer: a Hugging Face tokenizer with an EOS token.
        max_length: the longest example, in tokens, EOS and BOS included.
        train_on_inputs: also compute the loss on prompt tokens.
        tokenizer_key: ``tokenizer_fingerprint(tokenizer)``, for ``cache_key``.
    """

    tokenizer: object
    max_length: int
    train_on_inputs: bool = False
    tokenizer_key: str = ""
    prefix: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; every target must end with EOS")
        self.prefix = special_prefix(self.tokenizer)
        if self.max_length < len(self.prefix) + 2:
            raise ValueError(
                f"max_length={self.max_length} leaves no room for a response: it must be at "
                f"least {len(self.prefix) + 2} (special tokens + 1 token + EOS)"
            )

    def cache_key(self) -> list:
        """Everything that decides the output, with the tokenizer as its fingerprint."""
        return ["tokenize", self.max_length, self.train_on_inputs, self.tokenizer_key]

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts`` without special tokens."""
        # verbose=False: texts longer than the model's limit are expected here (we cut them)
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        prompts = [h + c + t for h, c, t in zip(*(batch[k] for k in _PARTS), strict=True)]
        prompt_ids = self.encode(prompts)
        response_ids = self.encode(batch["response"])
        out = {column: [] for column in OUTPUT_COLUMNS}
        for k, prompt in enumerate(prompts):
            ids, text, truncated, too_long = self.prefix + prompt_ids[k], prompt, False, False
            budget = self.max_length - len(response_ids[k]) - 1  # room left for the prompt
            if len(ids) > budget:
                fitted = self._shorten([batch[p][k] for p in _PARTS], budget)
                too_long, truncated = fitted is None, fitted is not None
                ids, text = fitted or (ids, text)
            row = ([], [], []) if too_long else self._row(ids, response_ids[k])
            for column, value in zip(
                OUTPUT_COLUMNS, (*row, text, truncated, too_long), strict=True
            ):
                out[column].append(value)
        return out

    def _row(self, prompt_ids: list[int], response_ids: list[int]):
        """input_ids, attention_mask and labels of prompt + response + EOS."""
        input_ids = prompt_ids + response_ids + [self.tokenizer.eos_token_id]
        masked = len(self.prefix) if self.train_on_inputs else len(prompt_ids)
        labels = [IGNORE_INDEX] * masked + input_ids[masked:]
        return input_ids, [1] * len(input_ids), labels

    def _shorten(self, parts: list[str], budget: int) -> tuple[list[int], str] | None:
        """Cut the end of the cuttable part until the prompt fits ``budget`` tokens.

        Decoding a token prefix and re-encoding it can change the count by a token or two, so
        the cut repeats until it fits; each round removes at least one token.

        Returns:
            (prompt ids, prompt text) or None when even an empty cut part does not fit.
        """
        head, cut, tail = parts
        cut_ids = self.encode([cut])[0] if cut else []
        keep = len(cut_ids)
        for _ in range(_MAX_CUT_ROUNDS):
            keep = max(0, keep - max(1, self._overflow(head, cut, tail, budget)))
            cut = self.tokenizer.decode(cut_ids[:keep]).rstrip("\ufffd") if keep else ""
            if self._overflow(head, cut, tail, budget) <= 0:
                text = head + cut + tail
                return self.prefix + self.encode([text])[0], text
            if keep == 0:
                return None
        return None

    def _overflow(self, head: str, cut: str, tail: str, budget: int) -> int:
        """How many tokens the prompt ``head + cut + tail`` exceeds ``budget`` by."""
        return len(self.prefix) + len(self.encode([head + cut + tail])[0]) - budget


_PARTS = ("prompt_head", "prompt_cut", "prompt_tail")
