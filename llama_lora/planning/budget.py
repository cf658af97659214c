"""Memory sizes as people write them: ``"16GB"``, ``"15.5 GiB"``, ``24e9``."""

from __future__ import annotations

import re

# SI units are powers of 1000 and IEC units powers of 1024, as their standards say; a "16 GB"
# card is usually 16 GiB, so write "16GiB" to use all of it ("16GB" keeps ~7% in reserve).
UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE](\d+))?\s*([A-Za-z]*)\s*$")
GIB = 2**30


def parse_bytes(size: int | float | str) -> int:
    """Bytes in ``size``: a number of bytes, or a string such as ``"16GB"`` or ``"16GiB"``.

    Raises:
        ValueError: an unparseable string, an unknown unit (lists the units), or a size <= 0.
    """
    if isinstance(size, bool):
        raise ValueError(f"memory size {size!r} is not a number of bytes or a string like '16GB'")
    if isinstance(size, (int, float)):
        value = float(size)
    elif isinstance(size, str):
        value = _parse_string(size)
    else:
        raise ValueError(f"memory size {size!r} is not a number of bytes or a string like '16GB'")
    if not value > 0:
        raise ValueError(f"memory size {size!r} must be positive")
    return int(value)


def _parse_string(text: str) -> float:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"memory size {text!r} is not like '16GB', '16GiB' or '1.5e10'")
    number, exponent, unit = match.groups()
    unit_key = (unit or "b").lower()
    if unit_key not in UNITS:
        units = sorted(UNITS, key=UNITS.get)
        raise ValueError(f"memory size {text!r}: unknown unit {unit!r}; use one of {units}")
    return float(number) * 10 ** int(exponent or 0) * UNITS[unit_key]


def format_gib(size: int) -> str:
    """``size`` bytes as GiB with three decimals, e.g. ``"3.016 GiB"``."""
    return f"{size / GIB:.3f} GiB"
