"""What a plan is, to look at: `tasobuild report` (one self-contained HTML page) and the pictures of `pareto --png`.

    frontier  the memory-latency frontier, each point labelled with what it runs, with the baselines and budget
    facts     everything the report shows, gathered from the pipeline's stages (a frozen value)
    plots     matplotlib (Agg) figures as PNG bytes: the frontier, the arena over time, the time per layer
    page      the facts and the PNGs as one HTML page (CSS and images inline, no script, names escaped)

Nothing here writes a file: the command line does, so a Python API can take the bytes.
"""
