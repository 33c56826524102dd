"""`<cc> --version`, asked once per process and compiler: the target's fingerprint keeps its first line, the kernel
bindings' build digest and the fast no-op check all of it. Standard library only (the no-op check imports it)."""

from __future__ import annotations

import functools
import os
import subprocess


class CompilerProblem(Exception):
    """Why the compiler could not say its version, worded to follow "compiler 'cc' ..."."""


@functools.cache
def version_text(argv: tuple[str, ...]) -> str:
    """The whole of `<argv> --version` on stdout, in the C locale so it does not depend on the user's language."""
    if not argv:
        raise CompilerProblem("is empty")
    try:
        result = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise CompilerProblem("was not found") from None
    except (PermissionError, subprocess.TimeoutExpired) as error:
        raise CompilerProblem(f"cannot be run ({type(error).__name__})") from None
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr.strip().splitlines() or ["no output"])[0]
        raise CompilerProblem(f"--version failed ({detail})")
    return result.stdout
