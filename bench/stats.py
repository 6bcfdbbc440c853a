"""Medians with their spread, and ratios between measurements taken in the same run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    """The median, min and max of repeated measurements, with the measurements themselves."""
    if not values:
        raise ValueError("no measurements to summarise")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any] | None:
    """Ratios of measurements taken side by side (repetition i of one with repetition i of the
    other), summarised; None when either side is missing or a denominator is zero."""
    if not numerators or len(numerators) != len(denominators) or not all(denominators):
        return None
    return summary([n / d for n, d in zip(numerators, denominators, strict=True)])
