"""Emission: a lowered Program becomes the files of a C project (rendering is pure: writing them is
tasobuild.incremental.tree)."""
