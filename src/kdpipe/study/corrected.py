"""Intervals for the confirmation that count the test images' sampling and correct for the number of claims.

A paired t-interval over runs treats the test split as the population; it is one sample of it. And a family of
m comparisons at 95 % each makes about 0.05 m false claims. So each comparison is:

1. **A two-level paired bootstrap** (Efron & Tibshirani 1993, ch. 6; pairs and test images crossed). With
   ``h_a[p, i]`` = 1 when cell a's run of pair p got test image i right, each of B replicates draws the n_p pairs
   and the n_i images with replacement, at once for both cells (so the pairing and the shared images hold):
       D* = (1 / n_p) sum_p c_p (1 / n_i) sum_i w_i (h_a[p, i] - h_b[p, i]),  c ~ Mult(n_p), w ~ Mult(n_i).
   Pairs must be independent: each (transfer set, seed) used once, as the confirmation draws them.
   The two-sided p-value is 2 min(P*(D* <= 0), P*(D* >= 0)), at least 1 / B.
2. **Holm's step-down** (Holm 1979) over the family: with the p-values sorted, p_(1) <= ... <= p_(m), the k-th
   is claimed when p_(j) <= alpha / (m - j + 1) for every j <= k. Its interval is the percentile interval at
   level 1 - alpha / (m - k + 1), the level its test is held to: a claimed difference's interval excludes zero,
   and no claim is made from an interval that contains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
REPLICATES = 10_000
CHUNK = 250


def pack(correct: np.ndarray) -> str:
    """A run's right and wrong test images, in test-split order, as hex (one bit each): small enough for
    result.json and for the committed per-run files."""
    return np.packbits(correct.astype(bool)).tobytes().hex()


def unpack(hex_bits: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:n].astype(np.int8)


def replicates(diff: np.ndarray, b: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """D* for ``diff`` = h_a - h_b of shape (pairs, images), B of them; fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    n_p, n_i = diff.shape
    out = np.empty(b)
    for start in range(0, b, CHUNK):
        size = min(CHUNK, b - start)
        images = rng.integers(0, n_i, size=(size, n_i))
        per_pair = np.stack([diff[p][images].mean(axis=1) for p in range(n_p)], axis=1)  # (size, pairs)
        pairs = rng.multinomial(n_p, np.full(n_p, 1 / n_p), size=size)
        out[start : start + size] = (pairs * per_pair).sum(axis=1) / n_p
    return out


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    pairs: int
    images: int
    mean: float
    p: float
    replicates: np.ndarray


def compare(a: str, b: str, hits_a: np.ndarray, hits_b: np.ndarray, b_reps: int = REPLICATES) -> Comparison:
    """``a - b`` in test top-1 over the pairs both ran (rows of ``hits_*`` in the same pair order)."""
    diff = hits_a.astype(np.int8) - hits_b.astype(np.int8)
    reps = replicates(diff, b_reps)
    p = min(1.0, max(2 * min(float(np.mean(reps <= 0)), float(np.mean(reps >= 0))), 1 / b_reps))
    return Comparison(a, b, diff.shape[0], diff.shape[1], float(diff.mean()), p, reps)


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    step: int
    level: float
    low: float
    high: float
    claimed: bool

    def line(self) -> str:
        c = self.comparison
        span = (
            f"{100 * c.mean:+.2f} points, {100 * self.level:.2f} % CI [{100 * self.low:+.2f}, {100 * self.high:+.2f}]"
            f" (Holm step {self.step}), p {c.p:.4f}, {c.pairs} pairs x {c.images} test images"
        )
        if self.claimed:
            return f"{c.a} {'above' if c.mean > 0 else 'below'} {c.b}: {span}"
        return f"no difference claimed between {c.a} and {c.b}: {span}"


def holm(family: list[Comparison], alpha: float = ALPHA) -> list[Verdict]:
    """Each comparison's verdict and interval under Holm's step-down, in the family's own order."""
    order = sorted(range(len(family)), key=lambda i: family[i].p)
    m = len(family)
    verdicts: dict[int, Verdict] = {}
    still = True
    for k, i in enumerate(order, start=1):
        level_alpha = alpha / (m - k + 1)
        low, high = np.quantile(family[i].replicates, [level_alpha / 2, 1 - level_alpha / 2])
        still = still and family[i].p <= level_alpha and (low > 0 or high < 0)  # a failed step ends the claims
        verdicts[i] = Verdict(family[i], k, 1 - level_alpha, float(low), float(high), still)
    return [verdicts[i] for i in range(m)]
