"""tasobuild: compile an ONNX CNN into a self-contained C project that runs as fast as it can in a memory budget.

The Python API (tasobuild.api) is re-exported here and imported on first use, so that `import tasobuild` (and the
command line's no-op build) never loads the stages' libraries:

    import tasobuild
    built = tasobuild.build("taso.toml", memory="96KiB")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tasobuild.api import (
        BuildResult,
        NodePlan,
        ParetoResult,
        PlanResult,
        build,
        pareto,
        plan,
        report,
        verify,
    )
    from tasobuild.errors import UserError

__all__ = ["BuildResult", "NodePlan", "ParetoResult", "PlanResult", "UserError", "__version__", "build", "pareto",
           "plan", "report", "verify"]


def __getattr__(name: str) -> Any:
    if name == "UserError":
        from tasobuild.errors import UserError

        return UserError
    if name in __all__:
        from tasobuild import api

        return getattr(api, name)
    raise AttributeError(f"module 'tasobuild' has no attribute {name!r}")
