"""ISO 4217 currency codes (from the ``pycountry`` data): what workspace settings, money values,
exchange rates and ``convert()`` accept."""

from __future__ import annotations

from functools import cache


@cache
def iso_codes() -> frozenset[str]:
    """Every ISO 4217 currency code (``CNY``, ``USD``, ``EUR``...)."""
    import pycountry  # loaded on first use: most compiles never need the data

    return frozenset(c.alpha_3 for c in pycountry.currencies)
