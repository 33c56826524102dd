"""The one exception type users see: a one-line cause naming the file, node or key and what to do."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (spec, model, budget, cache). The CLI prints it as one line and exits 1."""
