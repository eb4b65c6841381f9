"""The summaries of one numeric column that a single streaming pass can keep in bounded memory.

- `Moments`: count, mean and the sum of squared deviations, merged batch by batch with Chan et al.'s
  parallel formula (numerically stable; exact up to floating-point rounding).
- `Histogram`: exact counts on a grid of power-of-two-wide bins anchored at zero. A batch that falls outside
  the grid's BINS bins doubles the width, which merges neighbouring bins exactly (bin b becomes b // 2), so no
  count is ever estimated. At the end the used bins are grouped into at most TARGET_BUCKETS equal buckets.
- `Frequencies`: exact counts of each value (as its Python value; rendered as text only for the answer) while
  a column has at most MAX_DISTINCT of them (the top values and an exact distinct count); past that it gives up
  and frees its memory.
- Quantiles come from Apache DataSketches' KLL sketch (see stats.py), whose error is bounded and known.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

BINS = 4096
TARGET_BUCKETS = 20
MAX_DISTINCT = 1000
TOP_VALUES = 10


@dataclass
class Moments:
    """Count, mean and M2 (sum of squared deviations from the mean) of the values seen."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        """Fold in a batch of finite float64 values."""
        if values.size:
            mean = float(values.mean())
            deviations = values - mean
            self.add_counts(int(values.size), mean, float(np.square(deviations, out=deviations).sum()))

    def add_counts(self, count: int, mean: float, m2: float) -> None:
        """Fold in a batch summarised by its count, mean and M2."""
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total

    @property
    def stddev(self) -> float:
        """Population standard deviation."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


@dataclass(frozen=True)
class Bucket:
    """Values in [lower, upper) (the last bucket includes upper)."""

    lower: float
    upper: float
    count: int


@dataclass
class Histogram:
    """Exact counts of finite values on a power-of-two grid (see the module docstring)."""

    width: float = 0.0
    origin: float = 0.0  # absolute bin number of counts[0]
    low: float = math.inf  # absolute bin numbers of the lowest and highest non-empty bins
    high: float = -math.inf
    minimum: float = math.inf
    maximum: float = -math.inf
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, values: np.ndarray) -> None:
        """Fold in a batch of finite float64 values."""
        if values.size == 0:
            return
        low_value, high_value = float(values.min()), float(values.max())
        self.minimum, self.maximum = min(self.minimum, low_value), max(self.maximum, high_value)
        if self.width == 0.0:
            span = high_value - low_value
            base = span if span > 0 else max(abs(low_value), 1.0)
            # Never below the smallest normal float: a span of subnormals divided by BINS underflows to 0.
            self.width = 2.0 ** math.ceil(math.log2(max(base / BINS, sys.float_info.min)))
            # No finer than the values' own spacing (2**-52 of their magnitude): bin numbers then stay below 2**53,
            # exact as floats (a narrow batch far from zero made them overflow int64 and lose counts).
            magnitude = max(abs(low_value), abs(high_value))
            if magnitude > 0:
                self.width = max(self.width, 2.0 ** (math.frexp(magnitude)[1] - 52))
            self.origin = float(math.floor(low_value / self.width))
        # Bin numbers stay floats: a value far from zero on a fine grid has a bin number beyond int64, yet the
        # difference of two such numbers (what is stored) is small and exact.
        bins = np.multiply(values, 1.0 / self.width)  # the reciprocal of a power of two: exact, and faster
        np.floor(bins, out=bins)
        # floor(v / width) rises with v: the batch's lowest and highest bins are those of its minimum and maximum.
        # Kept as floats, like the bins (a bin number can exceed int64; numpy arithmetic on it must stay float).
        low = min(self.low, float(math.floor(low_value * (1.0 / self.width))))
        high = max(self.high, float(math.floor(high_value * (1.0 / self.width))))
        while high - low >= BINS:
            self._coarsen()
            bins = np.floor(bins / 2)
            low, high = math.floor(low / 2), math.floor(high / 2)
        if low < self.origin or high >= self.origin + BINS:
            self._rebase(low)
        self.low, self.high = low, high
        bins -= self.origin
        self.counts += np.bincount(bins.astype(np.int64), minlength=BINS)[:BINS]

    def _coarsen(self) -> None:
        """Double the bin width: bin b becomes bin b // 2, so counts merge exactly."""
        merged_origin = math.floor(self.origin / 2)
        targets = np.floor((self.origin + np.arange(BINS)) / 2) - merged_origin
        self.counts = np.bincount(targets.astype(np.int64), weights=self.counts, minlength=BINS)[:BINS] \
            .astype(np.int64)
        self.width *= 2
        self.origin = merged_origin
        if self.low != math.inf:
            self.low, self.high = math.floor(self.low / 2), math.floor(self.high / 2)

    def _rebase(self, low: float) -> None:
        """Move the grid's first bin to `low` (the used bins all fit: high - low < BINS)."""
        shifted = np.zeros(BINS, dtype=np.int64)
        if self.low != math.inf:
            start, end = int(self.low - self.origin), int(self.high - self.origin) + 1
            target = int(self.low - low)
            shifted[target:target + end - start] = self.counts[start:end]
        self.counts = shifted
        self.origin = low

    def buckets(self, target: int = TARGET_BUCKETS) -> list[Bucket]:
        """At most `target` equal groups of the used bins, the first starting at the minimum and the last ending
        at the maximum (inclusive)."""
        if self.low == math.inf:
            return []
        if self.minimum == self.maximum:
            return [Bucket(self.minimum, self.maximum, int(self.counts.sum()))]
        used = int(self.high - self.low) + 1
        group = math.ceil(used / target)
        start = int(self.low - self.origin)
        found = []
        for first in range(0, used, group):
            count = int(self.counts[start + first:start + min(first + group, used)].sum())
            lower = (self.low + first) * self.width
            upper = (self.low + min(first + group, used)) * self.width
            found.append(Bucket(lower, upper, count))
        found[0] = Bucket(self.minimum, found[0].upper, found[0].count)
        found[-1] = Bucket(found[-1].lower, self.maximum, found[-1].count)
        return found


@dataclass
class Frequencies:
    """Exact counts per value while there are at most MAX_DISTINCT values; None once there are more."""

    counts: Counter[object] | None = field(default_factory=Counter)

    def add(self, values: list[object], counts: list[int]) -> None:
        """Fold in one batch's value counts."""
        if self.counts is None:
            return
        if len(values) > MAX_DISTINCT:
            self.counts = None
            return
        for value, count in zip(values, counts, strict=True):
            self.counts[value] += count
        if len(self.counts) > MAX_DISTINCT:
            self.counts = None

    @property
    def active(self) -> bool:
        """Whether every value is still counted."""
        return self.counts is not None

    def top(self, text: Callable[[object], str], limit: int = TOP_VALUES) -> list[tuple[str, int]]:
        """The most frequent values as `text` renders them, most frequent first, ties by that text."""
        if self.counts is None:
            return []
        return sorted(((text(value), count) for value, count in self.counts.items()),
                      key=lambda item: (-item[1], item[0]))[:limit]
