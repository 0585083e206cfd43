"""How far apart two results are, and how far apart they may be.

Errors are relative to the reference's own scale, so one number reads the same for logits of
size 10 and weights of size 1e-3:

* a tensor: ``max|Δ| / max|ref|``;
* a set of tensors (all gradients, all parameters): per tensor
  ``max|Δ| / max(max|ref_t|, 1e-3 · max|ref| over the whole set)``, so a tensor whose
  gradient is nearly zero is not judged on round-off alone.

Bounds:

* float64 proves identical math: forward ≤ 1e-12, gradients ≤ 1e-10, trajectories ≤ 1e-8.
* float32 is judged against torch in float64: jaxconv's float32 error against it may be at most
  4× torch float32's own error against it, and at least 1e-5 is always allowed
  (``float32_bound``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

FLOAT64_BOUNDS = {'forward': 1e-12, 'grads': 1e-10, 'trajectory': 1e-8}
FLOAT32_FACTOR = 4.0
FLOAT32_FLOOR = 1e-5
SET_SCALE_FLOOR = 1e-3


def float32_bound(torch_error: float) -> float:
    """What jaxconv float32 may differ from torch float64, given torch float32's own error."""
    return max(FLOAT32_FACTOR * torch_error, FLOAT32_FLOOR)


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f'shapes differ: {a.shape} vs {b.shape}')
    if a.size == 0:
        return 0.0
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(b.dtype, np.floating):
        return float(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def max_abs(a) -> float:
    a = np.asarray(a, np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def relative_error(test, ref, scale: float | None = None) -> float:
    """``max|test - ref| / scale`` with ``scale = max|ref|`` unless given.

    Integer tensors (``num_batches_tracked``) must be equal: 0 when they are, inf otherwise.
    A NaN anywhere gives NaN (which no bound accepts).
    """
    test, ref = np.asarray(test), np.asarray(ref)
    if np.issubdtype(ref.dtype, np.integer):
        return 0.0 if np.array_equal(test, ref) else math.inf
    diff = max_abs_diff(test, ref)
    if math.isnan(diff):
        return math.nan
    scale = max_abs(ref) if scale is None else scale
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else math.inf


def set_scale_floor(ref: Mapping[str, np.ndarray]) -> float:
    """1e-3 of the largest magnitude over a set of float tensors."""
    values = [max_abs(v) for v in ref.values() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    return SET_SCALE_FLOOR * max(values, default=0.0)


def set_relative_errors(
    test: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Per-tensor relative error over a set, each scaled by max(max|ref_t|, 1e-3·max|ref|)."""
    missing = set(ref) ^ set(test)
    if missing:
        raise KeyError(f'the two sets differ in keys: {sorted(missing)}')
    floor = set_scale_floor(ref)
    return {k: relative_error(test[k], ref[k], max(max_abs(ref[k]), floor)) for k in ref}


@dataclass(frozen=True)
class Figure:
    """One compared quantity.

    ``error`` is jaxconv's relative error against the judge (torch float64), ``torch_error``
    (float32 only) torch float32's own error against the same judge, ``max_abs`` the plain
    difference between jaxconv and torch at the compared dtype.
    """

    name: str
    shape: tuple[int, ...]
    max_abs: float
    error: float
    bound: float
    torch_error: float | None = None

    @property
    def ok(self) -> bool:
        return self.error <= self.bound  # False for NaN


@dataclass
class Report:
    """The figures of one comparison (one arch, one dtype, one kind), in order."""

    title: str
    kind: str
    dtype: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures)

    @property
    def failures(self) -> list[Figure]:
        return [f for f in self.figures if not f.ok]

    @property
    def first_failure(self) -> Figure | None:
        return next((f for f in self.figures if not f.ok), None)

    @property
    def worst_error(self) -> float:
        return max((f.error for f in self.figures), default=0.0)

    @property
    def worst_torch_error(self) -> float | None:
        values = [f.torch_error for f in self.figures if f.torch_error is not None]
        return max(values) if values else None

    def table(self, only_failures: bool = False) -> str:
        """A fixed-width table: name, shape, max|Δ|, relative error (and torch's), bound, ok."""
        rows = self.failures if only_failures else self.figures
        with_torch = any(f.torch_error is not None for f in rows)
        header = (
            ['name', 'shape', 'max|Δ|', 'rel err']
            + (['torch f32 err'] if with_torch else [])
            + ['bound', 'ok']
        )
        body = []
        for f in rows:
            cells = [
                f.name,
                'x'.join(map(str, f.shape)) or '()',
                f'{f.max_abs:.3g}',
                f'{f.error:.3g}',
            ]
            if with_torch:
                cells.append('' if f.torch_error is None else f'{f.torch_error:.3g}')
            cells += [f'{f.bound:.3g}', 'PASS' if f.ok else 'FAIL']
            body.append(cells)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        fmt = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        lines = [f'== {self.title} ({self.dtype}) ==', fmt(header), fmt(['-' * w for w in widths])]
        lines += [fmt(r) for r in body] + self.notes
        verdict = 'PASS' if self.ok else f'FAIL ({len(self.failures)} of {len(self.figures)})'
        lines.append(f'worst rel err {self.worst_error:.3g}: {verdict}')
        return '\n'.join(lines)

    def __str__(self):
        return self.table()
