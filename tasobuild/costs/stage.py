"""The costs stage: the time of every candidate call on the target — from the cost cache, by profiling now,
or (later) predicted by the performance model — per `optimizer.costs`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

from tasobuild.costs.cache import Cost, CostCache, kernel_digest
from tasobuild.errors import UserError
from tasobuild.primitives import KernelCall
from tasobuild.spec import Spec
from tasobuild.target import Target, host_fingerprint

log = logging.getLogger("tasobuild")


@dataclass(frozen=True)
class Costed:
    """Every candidate's cost and how many measurements this run took to know them."""

    costs: Mapping[str, Cost]
    profiled: int


def measure_costs(spec: Spec, target: Target, calls: Sequence[KernelCall], progress: bool) -> Costed:
    from tasobuild import native
    from tasobuild.costs.profile import measure

    if spec.optimizer.costs == "model":
        raise UserError(f"{spec.where('optimizer.costs')}: optimizer.costs = \"model\" needs the performance model, "
                        f"which this version does not have yet; use \"profile\"")
    if not target.profile:
        raise UserError(f"{spec.where('target.name')}: target {target.name!r} cannot run kernels here, so its costs "
                        f"must be imported (`tasobuild costs import`) — not available in this version")
    fingerprint = host_fingerprint(target)
    kernels = native.load(target.cc, tuple(target.cflags))
    with CostCache(on_warning=log.warning) as cache:
        result = measure(calls, kernels, cache, fingerprint=fingerprint.digest, kernel_digest=kernel_digest(),
                         progress=progress)
    return Costed(result.costs, result.measured)


