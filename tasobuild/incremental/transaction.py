"""The build as a transaction: decide whether anything changed, run the pipeline, and replace the tree and the
lock together.

A no-op build that sees nothing changed writes nothing (and leaves a record that lets the next identical command
answer before the stages are imported: noop.fast_up_to_date); a budget change reuses what does not depend on the
budget — the imported graph, the baselines, the weight transforms — from the stage cache; `--frozen` takes the
decision from taso.lock instead of profiling and solving (frozen.FromLock); `--locked` fails if the lock would
change; builds of one project, and builds into one output folder, are serialised; the tree and the lock are
replaced as a transaction that touches only what tasobuild wrote (the algorithm is in tree.py's docstring).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from tasobuild.digest import sha256_bytes
from tasobuild.errors import UserError
from tasobuild.incremental.lock import (
    as_parsed,
    checked_lock,
    differences,
    lock_costs,
    parse_lock,
    read_lock,
    read_lock_text,
    render_lock,
)
from tasobuild.incremental.noop import Host, Invocation, Sources, write_noop_record
from tasobuild.incremental.stagecache import cached
from tasobuild.incremental.state import (
    FROZEN_INPUTS,
    busy_lock_path,
    changed_inputs,
    lock_inputs,
    onnx_digest,
    outputs_intact,
    read_state,
    write_state,
)
from tasobuild.incremental.tree import WriteResult, commit, journal_of, plan_tree, temp_of
from tasobuild.incremental.tree import recover as tree_recover
from tasobuild.pipeline import Decider, Solve, load_settings, network_inputs, run
from tasobuild.report import report
from tasobuild.spec import Spec
from tasobuild.target import Target

log = logging.getLogger("tasobuild")


@dataclass(frozen=True)
class Options:
    config: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    progress: bool = True
    locked: bool = False  # fail, writing nothing, if taso.lock or any output would change
    frozen: bool = False  # emit exactly what taso.lock says: no profiling, no solving
    update: bool = False  # `tasobuild update`: cost every call afresh, ignoring the lock's costs


@dataclass(frozen=True)
class BuildResult:
    report: dict[str, Any]
    lock_path: Path
    up_to_date: bool


def lock_path_of(spec: Spec) -> Path:
    """One lock per spec, beside it: taso.toml -> taso.lock, a.toml -> a.lock (two specs never share one)."""
    spec_file = Path(os.path.abspath(spec.spec_path))
    lock = spec_file.with_name(spec_file.stem + ".lock")
    if lock == spec_file:
        raise UserError(f"{spec.spec_path}: a spec named *.lock would be overwritten by its own lock; "
                        f"rename it to *.toml")
    return lock


def recover(lock_path: Path, out_dir: Path) -> None:
    """Finish or undo a build that was killed while replacing the tree (tree.recover)."""
    journal = journal_of(lock_path)
    try:
        if not os.path.lexists(journal) and not os.path.lexists(temp_of(journal)):
            return
        pending = _files_of(journal)
        done = tree_recover(out_dir, lock_path, pending, (_files_of(lock_path) or {}) if pending is not None else {})
    except OSError as error:
        raise UserError(f"{error.filename or out_dir}: cannot finish the interrupted build ({error.strerror}); "
                        f"fix the cause and rebuild") from None
    if done:
        log.warning("an interrupted build was found and %s: %s and %s are a consistent pair", done, out_dir,
                    lock_path.name)


def _files_of(lock: Path) -> dict[str, str] | None:
    """The [files] of the lock at `lock`, None if there is none or it is not a lock."""
    try:
        return dict(parse_lock(lock.read_text(encoding="utf-8"), lock)["files"])
    except (UserError, OSError, UnicodeDecodeError):
        return None


def previous_lock(text: str | None, state: Mapping[str, Any], lock_path: Path) -> dict[str, Any] | None:
    """The lock as parsed; the last build kept it parsed in its state, next to the digest of the text it wrote."""
    if text is None:
        return None
    known = state.get("lock", {})
    if isinstance(known, dict) and isinstance(known.get("data"), dict) \
            and known.get("sha256") == sha256_bytes(text.encode()):
        try:
            return checked_lock(known["data"], lock_path)
        except UserError as error:  # the state is a cache: a bad copy is dropped, the lock itself is parsed
            log.warning("build state: its copy of the lock is unusable (%s); reading the lock", error)
    return parse_lock(text, lock_path)


# What the lock's costs were measured for: they are reused only where these are unchanged (other kernel sources or
# another target file make other code, whose times the lock does not know).
COSTS_VALID_FOR = ("kernels", "target")
# Where the lock's costs were measured (the host fingerprint and the compiler's version). They change only when a
# build costs some call afresh, so a build on another machine that reuses every locked cost leaves the lock as it is.
COSTS_FROM = ("costs_from", "toolchain")


def reusable_costs(previous: Mapping[str, Any] | None, inputs: Mapping[str, str], update: bool) -> dict[str, Any]:
    """The lock's costs a build takes before looking anywhere else (none for `update`, or if the lock's costs were
    measured on other kernel sources or for another target file)."""
    if previous is None or update or changed_inputs(previous, inputs, COSTS_VALID_FOR):
        return {}
    return lock_costs(previous)


def locked_costs_of(spec: Spec, target: Target) -> dict[str, Any]:
    """The costs `plan` and `pareto` take from the project's taso.lock, as `build` would: they show its plan."""
    from tasobuild.costs.cache import kernel_digest

    lock = read_lock(lock_path_of(spec))
    return reusable_costs(lock, {"kernels": kernel_digest(), "target": target.digest}, update=False)


def with_costs_origin(data: dict[str, Any], previous: Mapping[str, Any] | None, all_from_lock: bool) -> None:
    """Keep the lock's record of where its costs were measured when every cost came from it (see COSTS_FROM)."""
    if previous is not None and all_from_lock:
        for key in COSTS_FROM:
            if key in previous["inputs"]:
                data["inputs"][key] = previous["inputs"][key]


@dataclass(frozen=True)
class Seen:
    """The sources of the build's inputs, captured before it read them: the no-op record (noop.py)."""

    invocation: Invocation
    sources: Sources
    host: Host


def up_to_date_report(lock: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    files = WriteResult((), tuple(sorted(lock["files"])), ())
    return report(lock, profiled=0, solver_seconds=0.0, out_dir=out_dir, files=files, up_to_date=True)


def build(options: Options) -> BuildResult:
    sources = Sources.capture(options.config)  # before the spec is read
    spec, target = load_settings(options.config, options.overrides)
    seen = Seen(Invocation.of(options.config, options.overrides, options.locked), sources, Host.capture(target))
    lock_path = lock_path_of(spec)
    # One build of a project at a time, and one build into an output folder (two specs may name the same one).
    with FileLock(str(busy_lock_path(lock_path))), FileLock(str(busy_lock_path(spec.out_dir))):
        recover(lock_path, spec.out_dir)
        text = read_lock_text(lock_path)
        state = read_state(spec.out_dir)
        previous = previous_lock(text, state, lock_path)
        onnx_sha, onnx_stamp = onnx_digest(spec.onnx_path, state)
        inputs = lock_inputs(spec, target, onnx_sha)
        # Up to date: the inputs that decide the output are unchanged (costs_from and toolchain only say where the
        # locked costs were measured: another machine reuses them), and so are the outputs.
        if previous is not None and text is not None and not options.frozen and not options.update \
                and not changed_inputs(previous, inputs, FROZEN_INPUTS) \
                and outputs_intact(spec.out_dir, previous, lock_path, state):
            if state["onnx"]["stamp"] != onnx_stamp:  # touched, same bytes: trust the new stamp from now on
                state = write_state(spec.out_dir, spec.onnx_path, onnx_sha, onnx_stamp, previous["files"], lock_path,
                                    text, previous)
            rep = up_to_date_report(previous, spec.out_dir)
            write_noop_record(seen.invocation, seen.sources, seen.host, lock_path, sha256_bytes(text.encode()),
                              state["onnx"], spec.out_dir, state["files"], rep)
            return BuildResult(rep, lock_path, True)
        return _build_and_write(options, spec, target, inputs, onnx_stamp, previous, lock_path, seen)


def _build_and_write(options: Options, spec: Spec, target: Target, inputs: Mapping[str, str],
                     onnx_stamp: list[int] | None, previous: Mapping[str, Any] | None, lock_path: Path,
                     seen: Seen) -> BuildResult:
    network = network_inputs(spec, target, inputs["onnx"], cached)
    decider: Decider
    if options.frozen:
        from tasobuild.incremental.frozen import FromLock

        decider = FromLock(previous, inputs, lock_path)
    else:
        decider = Solve(spec, target, options.progress, cached, reusable_costs(previous, inputs, options.update))
    built = run(network, decider, inputs, cached)
    planned, files, data = built.planned, built.files, built.lock
    with_costs_origin(data, previous, set(planned.costed.costs) <= planned.costed.from_lock)
    if options.frozen:
        assert previous is not None
        data["inputs"] = previous["inputs"]  # the lock is the truth: it stays exactly as it is
        data["cost"] = previous["cost"]
        drift = differences(previous, as_parsed(data))
        if drift:
            raise UserError(f"{lock_path}: --frozen, but rebuilding from the lock gives a different {drift[0]}; "
                            f"the lock does not match this tasobuild or its inputs: run `tasobuild build`")
    text = render_lock(data)
    parsed = as_parsed(data)
    if options.locked:
        if previous is None:
            raise UserError(f"{lock_path}: --locked, but there is no lock; run `tasobuild build` and commit taso.lock")
        drift = differences(previous, parsed)
        if drift:
            shown = ", ".join(drift[:4]) + (f" and {len(drift) - 4} more" if len(drift) > 4 else "")
            raise UserError(f"{lock_path}: --locked, but the build would change {shown}; run `tasobuild build` "
                            f"and commit taso.lock")
    lock_changes = read_lock_text(lock_path) != text
    written = plan_tree(spec.out_dir, files, None if previous is None else previous["files"], lock_path)
    if written.written or written.removed or lock_changes:
        commit(spec.out_dir, files, written, lock_path, text)
    state = write_state(spec.out_dir, spec.onnx_path, inputs["onnx"], onnx_stamp, data["files"], lock_path, text,
                        parsed)
    if not options.frozen:  # a frozen build keeps the lock's inputs, which need not be this machine's
        write_noop_record(seen.invocation, seen.sources, seen.host, lock_path, sha256_bytes(text.encode()),
                          state["onnx"], spec.out_dir, state["files"], up_to_date_report(parsed, spec.out_dir))
    rep = report(data, profiled=planned.costed.profiled, solver_seconds=planned.decision.plan.solver_seconds,
                 out_dir=spec.out_dir, files=written)
    return BuildResult(rep, lock_path, False)


