"""Costs: the time of every kernel call on a target, from the persistent cache or measured now.

`CostCache` is the machine-wide SQLite store; `measure` times the calls it misses; `kernel_digest` names the kernel
sources a cost was measured on. A node's cost is the sum of its calls' costs (concat makes several, views none).
"""

from __future__ import annotations

from tasobuild.costs.cache import (
    Cost,
    CostCache,
    CostKey,
    kernel_digest,
    read_csv,
    split_call_key,
)

_PROFILE = {"MeasurePolicy", "ProfileResult", "make_buffers", "measure", "measure_call"}


def __getattr__(name: str) -> object:
    """The profiler (NumPy, rich) loads on first use: a no-op build never needs it."""
    if name in _PROFILE:
        from tasobuild.costs import profile

        return getattr(profile, name)
    raise AttributeError(name)


__all__ = [
    "Cost",
    "CostCache",
    "CostKey",
    "MeasurePolicy",
    "ProfileResult",
    "kernel_digest",
    "make_buffers",
    "measure",
    "measure_call",
    "read_csv",
    "split_call_key",
]
