"""How much test data would settle a pair of arms: the minimum detectable difference at the current test size
and the test size needed to resolve a difference of the margin, for a paired two-sided test at alpha with
80% power (normal approximation).

The paired design's spread comes from the data. For accuracy it is the discordance: the share of examples
exactly one of the two arms gets right (a per-example difference of -1, 0 or +1 has variance close to that
share when the two accuracies are close, and McNemar's test looks only at those pairs). For any other metric
it is the paired bootstrap's standard error of the difference scaled to one example (se x sqrt(n)). The
figures use the unadjusted alpha: they size one comparison, not a family. Knows nothing about arms or files.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

POWER = 0.8
_Z = NormalDist()


def _z_sum(alpha: float, power: float) -> float:
    return _Z.inv_cdf(1 - alpha / 2) + _Z.inv_cdf(power)


def detectable_difference(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided paired test at `alpha` finds with probability `power` on n
    examples whose per-example differences have standard deviation `sd`."""
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def examples_needed(sd: float, difference: float, alpha: float, power: float = POWER) -> int:
    """Test examples at which a true difference of `difference` is found with probability `power`."""
    return math.ceil((_z_sum(alpha, power) * sd / difference) ** 2)


def power_figures(sd: float, n: int, margin: float, alpha: float, source: str) -> dict[str, Any] | None:
    """What the report prints for a pair; None when the two arms never differ on an example (nothing to size)."""
    if n <= 0 or sd <= 0:
        return None
    return {"power": POWER, "per_example_sd": sd, "source": source, "test_examples": n,
            "detectable_difference": detectable_difference(sd, n, alpha),
            "examples_for_margin": examples_needed(sd, margin, alpha) if margin > 0 else None}
