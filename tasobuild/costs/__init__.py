"""Costs: the time of every kernel call on a target, from the persistent cache or measured now.

`CostCache` is the machine-wide SQLite store; `measure` times the calls it misses; `kernel_digest` names the kernel
sources a cost was measured on. A node's cost is the sum of its calls' costs (concat makes several, views none).
"""

from __future__ import annotations

from tasobuild.costs.cache import (
    Cost,
    CostCache,
    CostKey,
    default_cache_dir,
    kernel_digest,
    read_csv,
    split_call_key,
)
from tasobuild.costs.profile import MeasurePolicy, ProfileResult, make_buffers, measure, measure_call

__all__ = [
    "Cost",
    "CostCache",
    "CostKey",
    "MeasurePolicy",
    "ProfileResult",
    "default_cache_dir",
    "kernel_digest",
    "make_buffers",
    "measure",
    "measure_call",
    "read_csv",
    "split_call_key",
]
