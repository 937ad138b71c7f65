"""Dollar figures people can read: three significant figures, so a cheap arm never shows as `$0.0000`."""

from __future__ import annotations

import math


def usd(value: float | None) -> str:
    """`$1,234.50`, `$0.0123`, `$0.000456`; `unknown` when there is no price; `$0` only for exactly zero."""
    if value is None:
        return "unknown"
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 100:
        return f"{sign}${size:,.0f}"
    decimals = max(2, 2 - math.floor(math.log10(size)))
    return f"{sign}${size:,.{decimals}f}"
