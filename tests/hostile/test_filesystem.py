"""Hostile filesystem corpus: tasobuild writes only where it owns, and the tree and the lock change together.

Every case is a real project (the DS-CNN fixture, costs from the performance model: nothing is profiled) built by
the real CLI. A refused input ends in exit 1 and ONE line naming the path or the key and what to do, and leaves
every byte of the project as it was; a failed or killed build leaves the old pair or the new pair (a journal the
next build finishes or undoes), and the next build, once the cause is fixed, works with no cleanup by hand.
The algorithm under test is in tasobuild/incremental/tree.py's docstring; docs/trust/filesystem.md has the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import WITH_TRADE_OFF, tasobuild, write_spec
from tests.zoo import ensure_model

MODEL = "ds_cnn_torch"
JOURNAL = ".taso.lock.tasobuild-new"


# --- projects ---------------------------------------------------------------------------------------------------------


def new_project(directory: Path, extra: str = "") -> Path:
    """A spec and its model (costs from the performance model), not built."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ensure_model(MODEL), directory / "model.onnx")
    spec = write_spec(directory, directory / "model.onnx", extra=extra)
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"'))
    return spec


def set_out(spec: Path, out: str) -> None:
    text = spec.read_text()
    assert '\nout = "out"\n' in text
    spec.write_text(text.replace('\nout = "out"\n', f"\nout = {json.dumps(out)}\n"))


def change_primitives(spec: Path) -> None:
    """A spec edit that rewrites some files, keeps most and removes one (a kernel the new plan does not use)."""
    spec.write_text(spec.read_text().replace('costs = "model"\n', 'costs = "model"\n' + WITH_TRADE_OFF))


def build(spec: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        return tasobuild("build", "-c", str(spec), "--json", *args, check=False)
    # SIGINT as a terminal delivers it: a shell starts background jobs with SIGINT ignored, and a Python started so
    # would ignore the fault hook's SIGINT too
    return subprocess.run([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--json", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def built_ok(spec: Path, *args: str) -> dict:
    proc = build(spec, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built once; tests take copies (the stage cache then answers their builds)."""
    spec = new_project(tmp_path_factory.mktemp("pristine") / "p")
    built_ok(spec)
    return spec


@pytest.fixture()
def project(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built project: out/ and taso.lock, a consistent pair."""
    shutil.copytree(pristine.parent, tmp_path / "p", symlinks=True)
    return tmp_path / "p" / "taso.toml"


@pytest.fixture()
def fresh(tmp_path: Path) -> Path:
    """A project never built."""
    return new_project(tmp_path / "p")


# --- what is on disk --------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`, symlinks not followed: kind, bytes' digest or link target, mode, mtime, inode. A
    folder's mtime is left out: a temp written then undone inside it changes it, and nothing reads it."""
    entries: dict[str, tuple] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", "")
            else:
                what = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            mtime = 0 if what[0] == "dir" else st.st_mtime_ns
            entries[path.relative_to(root).as_posix()] = (*what, st.st_mode, mtime, st.st_ino)
    return entries


def lock_files(lock: Path) -> dict[str, str]:
    return tomllib.loads(lock.read_text())["files"]


def pair_ok(spec: Path, lock_name: str = "taso.lock", out: str = "out") -> bool:
    """The lock and the tree agree (every file the lock lists has its digest), and nothing of a build is left."""
    root, lock = spec.parent / out, spec.parent / lock_name
    listed = lock_files(lock)
    agree = all((root / rel).is_file() and not (root / rel).is_symlink()
                and hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest for rel, digest in listed.items())
    leftovers = [p for p in spec.parent.rglob("*") if p.name.endswith((".tasobuild-tmp", ".tasobuild-new"))]
    return agree and not leftovers


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("tasobuild: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- 1. build.out confined -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Out:
    name: str
    value: Callable[[Path], str]  # project folder -> build.out as written
    rule: str


OUTSIDE = [
    Out("dot", lambda p: ".", "is the project folder"),
    Out("dotdot", lambda p: "..", "is above the project folder"),
    Out("absolute-elsewhere", lambda p: str(p.parent / "x"), "leads out of the project folder"),
    Out("absolute-root", lambda p: "/", "is above the project folder"),
    Out("sibling", lambda p: "../sibling", "leads out of the project folder"),
    Out("back-in-and-up", lambda p: "out/../..", "is above the project folder"),
    Out("absolute-project", lambda p: str(p), "is the project folder"),
    Out("symlink-out", lambda p: _link(p / "escape", p.parent / "elsewhere"), "leads out of the project folder"),
    Out("symlink-to-project", lambda p: _link(p / "self", p), "is the project folder (following symlinks)"),
    Out("symlink-inside-out", lambda p: _link(p / "inner", p.parent) + "/x", "leads out of the project folder"),
]


def _link(link: Path, target: Path) -> str:
    target.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link.name


@pytest.mark.parametrize("case", OUTSIDE, ids=[c.name for c in OUTSIDE])
def test_build_out_outside_the_project_is_refused(fresh: Path, case: Out) -> None:
    set_out(fresh, case.value(fresh.parent))
    before, around = snapshot(fresh.parent), snapshot(fresh.parent.parent)
    line = one_line_error(build(fresh), "taso.toml:", "build.out", case.rule, "must name a folder inside")
    assert "command line" not in line
    assert snapshot(fresh.parent) == before and snapshot(fresh.parent.parent) == around  # not a byte written


@pytest.mark.parametrize("out", ["absolute-inside", "symlink-inside"])
def test_build_out_inside_the_project_builds(fresh: Path, out: str) -> None:
    if out == "absolute-inside":
        set_out(fresh, str(fresh.parent / "abs"))
        root = fresh.parent / "abs"
    else:
        (fresh.parent / "real").mkdir()
        (fresh.parent / "link").symlink_to("real")
        set_out(fresh, "link")
        root = fresh.parent / "real"
    built_ok(fresh)
    assert (root / "Makefile").is_file() and pair_ok(fresh, out=root.name)


# --- 2. only what tasobuild wrote is replaced or deleted --------------------------------------------------------------


def test_a_first_build_into_a_folder_that_is_not_empty_is_refused(fresh: Path) -> None:
    (fresh.parent / "out").mkdir()
    (fresh.parent / "out" / "notes.txt").write_text("mine")
    before = snapshot(fresh.parent)
    one_line_error(build(fresh), "out: the output folder is not empty", "no taso.lock says tasobuild wrote it")
    assert snapshot(fresh.parent) == before


def test_a_first_build_into_an_empty_folder_adopts_it(fresh: Path) -> None:
    (fresh.parent / "out").mkdir(mode=0o750)
    built_ok(fresh)
    assert pair_ok(fresh) and stat.S_IMODE((fresh.parent / "out").stat().st_mode) == 0o750


@dataclass(frozen=True)
class Blocker:
    name: str
    make: Callable[[Path], Path]  # the output folder -> the path that blocks; what is outside must stay as it was
    message: str


def _replace_with_file(path: Path) -> Path:
    shutil.rmtree(path)
    path.write_text("a file")
    return path


def _replace_with_link(path: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True) if not path.is_file() else target.write_bytes(path.read_bytes())
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.symlink_to(target)
    return path


def _replace_with_folder(path: Path) -> Path:
    path.unlink()
    path.mkdir()
    (path / "kept").write_text("mine")
    return path


BLOCKERS = [
    Blocker("file-where-a-folder-is", lambda out: _replace_with_file(out / "src"), "is a file"),
    Blocker("symlinked-folder-out", lambda out: _replace_with_link(out / "src", out.parent.parent / "victim"),
            "is a symlink"),
    Blocker("symlinked-file-out", lambda out: _replace_with_link(out / "src" / "net.c", out.parent.parent / "v.c"),
            "is a symlink"),
    Blocker("folder-where-a-file-is", lambda out: _replace_with_folder(out / "Makefile"), "is a folder"),
    Blocker("output-folder-is-a-file", lambda out: _replace_with_file(out), "the output folder (build.out) is a file"),
    Blocker("output-folder-dangling-link", lambda out: _dangling(out), "is a symlink to a missing folder"),
]


def _dangling(out: Path) -> Path:
    shutil.rmtree(out)
    out.symlink_to(out.parent / "gone")
    return out


@pytest.mark.parametrize("case", BLOCKERS, ids=[c.name for c in BLOCKERS])
def test_something_in_the_way_is_refused_then_the_next_build_repairs(project: Path, case: Blocker) -> None:
    """Rebuilding with a changed spec: the blocker is named, nothing moves (outside the project neither); once the
    user moves it away, the next build works."""
    change_primitives(project)
    blocker = case.make(project.parent / "out")
    before, around = snapshot(project.parent), snapshot(project.parent.parent)
    one_line_error(build(project), str(blocker), case.message, "nothing was written")
    assert snapshot(project.parent) == before and snapshot(project.parent.parent) == around
    if blocker.is_dir() and not blocker.is_symlink():
        shutil.rmtree(blocker)
    else:
        blocker.unlink()
    built_ok(project)
    assert pair_ok(project)


def test_a_user_file_where_tasobuild_would_write_is_never_replaced(project: Path) -> None:
    """A file the lock does not list is not tasobuild's, even at a path it writes: a user's file there is refused,
    not lost (here the lock forgot Makefile, as an older lock of a plan without it would)."""
    lock = project.parent / "taso.lock"
    lock.write_text("".join(line for line in lock.read_text().splitlines(keepends=True)
                            if not line.startswith("Makefile = ")))
    makefile = project.parent / "out" / "Makefile"
    makefile.write_text("# my own Makefile\n")
    one_line_error(build(project), f"{makefile}: exists and tasobuild did not write it", "move it away")
    assert makefile.read_text() == "# my own Makefile\n"


def test_a_lost_lock_with_a_changed_tree_is_not_adopted(project: Path) -> None:
    (project.parent / "taso.lock").unlink()
    (project.parent / "out" / "Makefile").write_text("# my own Makefile\n")
    before = snapshot(project.parent)
    one_line_error(build(project), "the output folder is not empty and no taso.lock says tasobuild wrote it")
    assert snapshot(project.parent) == before


@pytest.fixture(scope="module")
def rebuilt(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict, dict]:
    """A built project the user worked in (make, own files, an empty folder, a symlink, chmods), then rebuilt with
    a spec that rewrites some files and removes one: (spec, snapshot before, snapshot after, the report)."""
    root = tmp_path_factory.mktemp("rebuilt") / "p"
    shutil.copytree(pristine.parent, root, symlinks=True)
    spec, out = root / "taso.toml", root / "out"
    subprocess.run(["make", "-s", "-j2", "-C", str(out)], check=True, capture_output=True)
    (out / "NOTES.md").write_text("mine")
    (out / "src" / "my_extra.c").write_text("int mine;\n")
    (out / "empty").mkdir()
    (out / "src" / "kernels" / "empty").mkdir()
    (out / "data").symlink_to(root.parent)
    (out / "src" / "net.c").chmod(0o600)  # a file the rebuild rewrites
    (out / "include").chmod(0o700)  # a folder it writes into
    before = snapshot(root)
    change_primitives(spec)
    report = built_ok(spec)
    return spec, before, snapshot(root), report


KEPT = {
    "user-file": "out/NOTES.md",
    "user-file-in-an-emitted-folder": "out/src/my_extra.c",
    "empty-folder": "out/empty",
    "empty-folder-in-an-emitted-folder": "out/src/kernels/empty",
    "symlink": "out/data",
    "object-file": "out/obj/src/net.o",
    "linked-binary": "out/net_main",
    "folder-permissions": "out/include",
}


@pytest.mark.parametrize("rel", KEPT.values(), ids=list(KEPT))
def test_a_rebuild_keeps_what_tasobuild_did_not_write(rebuilt: tuple[Path, dict, dict, dict], rel: str) -> None:
    spec, before, after, _ = rebuilt
    assert rel in before, sorted(before)
    assert after[rel] == before[rel]
    assert pair_ok(spec)


def test_a_rebuild_rewrites_only_changed_files_and_keeps_their_permissions(rebuilt: tuple) -> None:
    spec, before, after, report = rebuilt
    files = report["files"]
    assert files["written"] and files["unchanged"] and files["removed"], files
    for rel in files["unchanged"]:
        assert after["out/" + rel] == before["out/" + rel], rel  # same inode and mtime: make sees it unchanged
    for rel in files["removed"]:
        assert "out/" + rel not in after
    assert "src/net.c" in files["written"] and stat.S_IMODE(after["out/src/net.c"][2]) == 0o600
    assert not [p for p in spec.parent.parent.iterdir() if p.name.startswith(".")]  # no staging copy beside it
    make = subprocess.run(["make", "-C", str(spec.parent / "out"), "--dry-run"], capture_output=True, text=True)
    recompiled = {word for word in make.stdout.split() if word.endswith(".c")}
    sources = {rel for rel in files["written"] + files["unchanged"] if rel.endswith(".c")}
    # Every rewritten source is recompiled; an untouched one whose headers did not change either is not.
    assert {rel for rel in files["written"] if rel.endswith(".c")} <= recompiled < sources, make.stdout


# --- 5. one lock per spec; 3. projects sharing an output folder -----------------------------------------------------


def test_two_specs_in_one_folder_have_a_lock_each(fresh: Path) -> None:
    other = fresh.with_name("b.toml")
    other.write_text(fresh.read_text().replace('out = "out"', 'out = "out_b"'))
    built_ok(fresh)
    report = built_ok(other)
    assert (fresh.parent / "b.lock").is_file() and report["files"]["written"]
    assert pair_ok(fresh) and pair_ok(other, "b.lock", "out_b")
    proc = tasobuild("build", "-c", str(other), check=False)
    assert proc.returncode == 0 and "up to date with" in proc.stdout and "b.lock" in proc.stdout


def test_two_specs_sharing_one_output_folder_the_second_is_refused(fresh: Path) -> None:
    other = fresh.with_name("b.toml")
    other.write_text(fresh.read_text().replace('name = "net"', 'name = "other"'))
    built_ok(fresh)
    before = snapshot(fresh.parent)
    one_line_error(build(other), "output folder is not empty", "no b.lock says tasobuild wrote it")
    assert snapshot(fresh.parent) == before and pair_ok(fresh)


def test_two_specs_sharing_one_output_folder_at_once_never_mix(fresh: Path) -> None:
    other = fresh.with_name("b.toml")
    other.write_text(fresh.read_text().replace('name = "net"', 'name = "other"'))
    procs = [subprocess.Popen([sys.executable, "-m", "tasobuild", "build", "-c", str(s)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (fresh, other)]
    codes = sorted(p.wait() for p in procs)
    for p in procs:
        p.communicate()
    assert codes == [0, 1]
    winner = fresh if (fresh.parent / "taso.lock").exists() else other
    assert pair_ok(winner, winner.with_suffix(".lock").name)
    assert not ((fresh.parent / "taso.lock").exists() and (fresh.parent / "b.lock").exists())


# --- 4. harness and init refuse to overwrite without --force --------------------------------------------------------


def test_profile_emit_harness_refuses_a_folder_that_is_not_empty(fresh: Path) -> None:
    harness = fresh.parent / "h"
    harness.mkdir()
    (harness / "Makefile").write_text("mine\n")
    proc = tasobuild("profile", "-c", str(fresh), "--emit-harness", str(harness), check=False)
    one_line_error(proc, f"{harness}: not empty", "--force")
    assert sorted(p.name for p in harness.iterdir()) == ["Makefile"] and (harness / "Makefile").read_text() == "mine\n"
    (harness / "NOTES").write_text("kept")
    tasobuild("profile", "-c", str(fresh), "--emit-harness", str(harness), "--force")
    assert (harness / "Makefile").read_text() != "mine\n" and (harness / "NOTES").read_text() == "kept"


def test_init_refuses_to_overwrite_a_spec_without_force(fresh: Path) -> None:
    text = fresh.read_text()
    one_line_error(tasobuild("init", str(fresh.parent / "model.onnx"), "-c", str(fresh), check=False),
                   "already exists", "--force")
    assert fresh.read_text() == text
    tasobuild("init", str(fresh.parent / "model.onnx"), "-c", str(fresh), "--force")
    assert fresh.read_text() != text


# --- 6. the up-to-date check is not fooled by a same-size, same-mtime replacement -------------------------------------


def _same_size_other_bytes(path: Path, data: bytes) -> None:
    """Replace `path` by `data` (same length), with the old mtime put back, as `cp -p` or a checkout may."""
    st = path.stat()
    assert len(data) == st.st_size and data != path.read_bytes()
    replacement = path.with_name(path.name + ".new")
    replacement.write_bytes(data)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)


def _model_with_another_weight(model: Path) -> bytes:
    import onnx

    graph = onnx.load(str(model)).graph
    raw = max((init.raw_data for init in graph.initializer), key=len)
    data = model.read_bytes()
    at = data.index(raw) + len(raw) // 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_a_same_size_same_mtime_model_swap_is_seen(project: Path) -> None:
    assert built_ok(project)["files"]["written"] == []  # a copy: the full check, which writes nothing
    assert built_ok(project)["up_to_date"]  # now answered by the fast check
    model = project.parent / "model.onnx"
    _same_size_other_bytes(model, _model_with_another_weight(model))
    report = built_ok(project)
    assert not report["up_to_date"] and report["files"]["written"] and pair_ok(project)


def test_a_same_size_same_mtime_output_swap_is_rewritten(project: Path) -> None:
    assert built_ok(project)["files"]["written"] == [] and built_ok(project)["up_to_date"]
    header = project.parent / "out" / "include" / "net.h"
    text = header.read_bytes()
    _same_size_other_bytes(header, text.replace(b"net", b"NET", 1))
    report = built_ok(project)
    assert report["files"]["written"] == ["include/net.h"] and header.read_bytes() == text


def test_a_same_size_same_mtime_spec_swap_is_seen(project: Path) -> None:
    assert built_ok(project)["files"]["written"] == [] and built_ok(project)["up_to_date"]
    _same_size_other_bytes(project, project.read_bytes().replace(b'"2 GiB"', b'"3 GiB"'))
    report = built_ok(project)
    assert report["budget_bytes"] == 3 << 30 and pair_ok(project)


# --- 3. leftovers: what an interrupted build may leave, and what is lost by hand --------------------------------------


def _leftover_valid_journal_without_temps(spec: Path) -> None:
    lock = spec.parent / "taso.lock"
    (spec.parent / JOURNAL).write_text(lock.read_text().replace('"src/net.c" = "', '"src/net.c" = "0'))


LEFTOVERS = {
    "garbage-journal": lambda spec: (spec.parent / JOURNAL).write_text("not a lock ["),
    "journal-whose-files-are-missing": _leftover_valid_journal_without_temps,
    "journal-identical-to-the-lock": lambda spec: shutil.copyfile(spec.parent / "taso.lock", spec.parent / JOURNAL),
    "half-written-journal-temp": lambda spec: (spec.parent / f".{JOURNAL}.tasobuild-tmp").write_text("version = "),
    "stray-temp-in-the-tree": lambda spec: (spec.parent / "out" / "src" / ".net.c.tasobuild-tmp").write_text("x"),
    "lock-deleted-tree-present": lambda spec: (spec.parent / "taso.lock").unlink(),
    "tree-deleted-lock-present": lambda spec: shutil.rmtree(spec.parent / "out"),
    "one-output-deleted": lambda spec: (spec.parent / "out" / "src" / "net.c").unlink(),
}


@pytest.mark.parametrize("make", LEFTOVERS.values(), ids=list(LEFTOVERS))
def test_the_next_build_repairs_any_leftover(project: Path, make: Callable[[Path], None]) -> None:
    lock_before = (project.parent / "taso.lock").read_bytes()
    make(project)
    stray = project.parent / "out" / "src" / ".net.c.tasobuild-tmp"
    user_made = stray.read_text() if stray.exists() else None  # no journal names it: it is not tasobuild's
    built_ok(project)
    if user_made is not None:
        assert stray.read_text() == user_made
        stray.unlink()
    assert pair_ok(project) and (project.parent / "taso.lock").read_bytes() == lock_before


# --- 3. filesystem errors: one line, the pair on disk is the one the line names, the next build works -----------------


def _chattr(path: Path, flag: str) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture()
def immutable() -> Iterator[Callable[[Path], None]]:
    """chattr +i (tests run as root, where chmod stops nothing); undone after the test."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if shutil.which("chattr") is None or not _chattr(path, "+i"):
            pytest.skip("chattr +i is not available on this filesystem")
        made.append(path)

    yield make
    for path in made:
        _chattr(path, "-i")


@pytest.mark.parametrize("where", ["out/src", "project-folder"])
def test_a_read_only_folder_changes_nothing_and_the_next_build_works(project: Path, where: str,
                                                                     immutable: Callable[[Path], None]) -> None:
    change_primitives(project)
    folder = project.parent / "out" / "src" if where == "out/src" else project.parent
    immutable(folder)
    before = snapshot(project.parent)
    one_line_error(build(project), "cannot write (Operation not permitted)", "nothing was changed", "fix the cause")
    assert snapshot(project.parent) == before
    _chattr(folder, "-i")
    built_ok(project)
    assert pair_ok(project)


# --- the fault hook: failures and Ctrl-C at chosen steps of a real CLI build ---------------------------------------


def mutation_steps(spec: Path) -> list[str]:
    """The paths of the filesystem mutations a build of `spec` makes, in order (run in a throwaway copy, paths
    given as the spec's). Every mutation is counted, the cache's records too, as TASOBUILD_FAULT_AT counts them."""
    trial = spec.parent.with_name(spec.parent.name + "-trial")
    shutil.copytree(spec.parent, trial, symlinks=True)
    code = ("import sys, tasobuild.incremental.tree as tree, tasobuild.cli as cli\n"
            "steps = []\n"
            "tree._mutation = lambda path: steps.append(str(path))\n"
            "cli.main(['build', '-c', sys.argv[1], '--json'])\n"
            "print('\\n'.join(steps), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(trial / spec.name)], capture_output=True, text=True,
                          check=True)
    shutil.rmtree(trial)
    return [line.replace(str(trial), str(spec.parent)) for line in proc.stderr.splitlines()]


@pytest.fixture(scope="module")
def fault_points(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The step numbers of a rebuild with changed primitives (a `project` copy; caches warm, so every copy's build
    takes the same steps): the journal, the first and last temp, the first rename into the tree, the lock's."""
    root = tmp_path_factory.mktemp("steps") / "p"
    shutil.copytree(pristine.parent, root, symlinks=True)
    change_primitives(root / "taso.toml")
    mutation_steps(root / "taso.toml")  # warms the stage cache for the new spec
    steps = mutation_steps(root / "taso.toml")
    out, lock = str(root / "out"), str(root / "taso.lock")
    in_tree = [i for i, p in enumerate(steps, start=1) if p.startswith(out + "/")]
    temps = [i for i in in_tree if steps[i - 1].endswith(".tasobuild-tmp")]
    renames = [i for i in in_tree if i > temps[-1] and not steps[i - 1].endswith(".tasobuild-tmp")]
    return {"journal": 1, "first-temp": temps[0], "last-temp": temps[-1], "first-rename-in-tree": renames[0],
            "lock-rename": next(i for i, p in enumerate(steps, start=1) if p == lock)}


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS", "EIO"])
@pytest.mark.parametrize("step", ["journal", "first-temp", "last-temp", "first-rename-in-tree", "lock-rename"])
def test_a_filesystem_error_at_each_step_leaves_the_pair_the_message_names(
        project: Path, fault_points: dict[str, int], step: str, errno_name: str) -> None:
    change_primitives(project)
    before = snapshot(project.parent)
    lock_before = (project.parent / "taso.lock").read_bytes()
    proc = build(project, env={"TASOBUILD_FAULT_AT": f"{fault_points[step]}:{errno_name}"})
    line = one_line_error(proc, "cannot write (", "fix the cause")
    if step == "journal":
        assert "nothing was changed" in line and snapshot(project.parent) == before
    elif step in ("first-temp", "last-temp"):  # the undo failed too (the fault persists): the old pair, leftovers
        assert "the tree and taso.lock are the previous build's" in line
        assert {rel: v for rel, v in snapshot(project.parent).items() if not rel.endswith(".tasobuild-new")
                and not rel.endswith(".tasobuild-tmp")} == before
    else:
        assert "partly updated" in line and "records the rest" in line and (project.parent / JOURNAL).exists()
    built_ok(project)  # the cause is gone: the next build finishes or undoes it, then builds
    assert pair_ok(project) and (project.parent / "taso.lock").read_bytes() != lock_before


@pytest.mark.parametrize("step", ["journal", "last-temp", "first-rename-in-tree"])
def test_ctrl_c_at_each_step_says_what_is_on_disk(project: Path, fault_points: dict[str, int], step: str) -> None:
    change_primitives(project)
    before = snapshot(project.parent)
    lock_before = (project.parent / "taso.lock").read_bytes()
    proc = build(project, env={"TASOBUILD_FAULT_AT": f"{fault_points[step]}:SIGINT"})
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    if step == "first-rename-in-tree":
        assert "the new outputs and lock were already in place" in proc.stderr
        assert pair_ok(project) and (project.parent / "taso.lock").read_bytes() != lock_before
    else:
        assert "previous outputs are intact" in proc.stderr
        assert snapshot(project.parent) == before and pair_ok(project)


# --- 7. deterministic fault injection: a build killed at every filesystem mutation in turn --------------------------


def _killed_at(spec: Path, step: int) -> int:
    """Run `tasobuild build` in a forked child (the libraries already imported: fast) that dies at mutation
    `step` (os._exit(99), as TASOBUILD_FAULT_AT=step does); its exit code (0: it finished before that step)."""
    import tasobuild.cli as cli
    import tasobuild.incremental.tree as tree

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            tree._FAULT, tree._mutations = (step, "exit"), 0
            code = cli.main(["build", "-c", str(spec), "--json"])
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@dataclass(frozen=True)
class Pair:
    lock: bytes | None
    tree: dict[str, str]  # the lock's files -> digest, as on disk


def pair_on_disk(spec: Path) -> Pair:
    lock = spec.parent / "taso.lock"
    out = spec.parent / "out"
    files = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out.rglob("*")) if p.is_file() and not p.is_symlink()} if out.is_dir() else {}
    return Pair(lock.read_bytes() if lock.exists() else None, files)


def _generated(pair: Pair, user_files: set[str]) -> Pair:
    return Pair(pair.lock, {rel: d for rel, d in pair.tree.items() if rel not in user_files})


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["first-build", "rebuild-changing-files"])
def test_a_build_killed_at_every_mutation_leaves_a_pair_the_next_build_completes(
        pristine: Path, tmp_path: Path, scenario: str) -> None:
    from tasobuild.incremental.transaction import recover

    start = tmp_path / "start" / "p"
    if scenario == "first-build":
        new_project(start)
    else:
        shutil.copytree(pristine.parent, start, symlinks=True)
        (start / "out" / "NOTES.md").write_text("mine")
        change_primitives(start / "taso.toml")
    user_files = {"NOTES.md"} if scenario != "first-build" else set()
    old = _generated(pair_on_disk(start / "taso.toml"), user_files)
    reference = tmp_path / "reference" / "p"
    shutil.copytree(start, reference, symlinks=True)
    assert _killed_at(reference / "taso.toml", 10 ** 9) == 0  # also warms the stage cache for the new spec
    new = _generated(pair_on_disk(reference / "taso.toml"), user_files)
    assert new != old and new.lock is not None
    step, finished = 0, False
    while not finished:
        step += 1
        assert step < 1000
        trial = tmp_path / f"t{step}" / "p"
        shutil.copytree(start, trial, symlinks=True)
        spec = trial / "taso.toml"
        code = _killed_at(spec, step)
        assert code in (0, 99), code
        finished = code == 0
        if not (trial / JOURNAL).exists():  # no journal: the pair on disk is the old one or the new one as it is
            assert _generated(pair_on_disk(spec), user_files) in (old, new), step
        recover(trial / "taso.lock", trial / "out")  # what the next build does first
        assert _generated(pair_on_disk(spec), user_files) in (old, new), step
        assert pair_on_disk(spec) == pair_on_disk(spec) and not [p for p in trial.rglob("*.tasobuild-*")], step
        assert _killed_at(spec, 10 ** 9) == 0, step  # the next build completes ...
        assert _generated(pair_on_disk(spec), user_files) == new, step  # ... with the new pair
        assert all((trial / "out" / rel).read_text() == "mine" for rel in user_files), step
        shutil.rmtree(trial.parent)
    print(f"{scenario}: {step - 1} fault points, each consistent and repaired")
    assert step - 1 >= 20
