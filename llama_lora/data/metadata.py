"""Task metadata carried by every split that ``build_dataset`` returns.

``evaluate`` reads the task (and, for sentiment, the label words) from here, so users need not
repeat it. It lives in ``Dataset.info.description`` as JSON under the key ``"llama_lora"``
because ``datasets`` keeps ``info`` through ``map``/``filter``/``select`` and saving to disk,
while attributes set on a ``Dataset`` object are lost on the first transform.
"""

from __future__ import annotations

import json
from typing import Any

_KEY = "llama_lora"


def write_metadata(dataset, metadata: dict[str, Any]):
    """Store ``metadata`` (JSON-serialisable) on ``dataset`` in place and return it."""
    dataset.info.description = json.dumps({_KEY: metadata}, sort_keys=True)
    return dataset


def read_metadata(dataset) -> dict[str, Any]:
    """Return the metadata ``write_metadata`` stored, or ``{}`` for a foreign dataset."""
    info = getattr(dataset, "info", None)
    description = getattr(info, "description", None) or ""
    try:
        payload = json.loads(description)
    except (TypeError, ValueError):
        return {}
    return payload.get(_KEY, {}) if isinstance(payload, dict) else {}
