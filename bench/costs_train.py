"""Train the shipped performance model: time the training calls on this machine, fit, write tasobuild/data/.

    python bench/costs_train.py                      # host target flags; writes tasobuild/data/cost_model.json
                                                     # and tasobuild/data/cost_samples.csv (the training data)
    python bench/costs_train.py --synthetic-convs 200,240,60 --out /tmp/mixes   # all three synthetic mixes
    python bench/costs_train.py --cflags "-O2 -fno-tree-vectorize" --out /tmp/o2   # another flag set

The training set (bench/costs_data.py): every candidate call of the training networks (AlexNet and the MLPerf Tiny
fixtures — none of the evaluation networks ResNet-18, GoogLeNet, MobileNetV2, SqueezeNet 1.1) plus
seeded synthetic layers of the mixes in bench.costs_data.MIXES (by default the broad mix alone: the shipped model).
Timings go through the cost cache ($TASOBUILD_CACHE_DIR or --cache-dir), so a rerun only measures what is new (e.g.
primitives added since) and refits.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.costs_data import MIXES, REPO, TRAIN_NETWORKS, fingerprint_of, measure_into_cache, training_calls  # noqa: E402
from tasobuild.costs.cache import CostCache, CostKey, kernel_digest  # noqa: E402
from tasobuild.costs.features import FEATURE_VERSION  # noqa: E402
from tasobuild.costs.model import CostModel, Sample, train, write_samples  # noqa: E402
from tasobuild.costs.stage import MODEL_FILE, SAMPLES_FILE  # noqa: E402
from tasobuild.resources import cache_dir  # noqa: E402
from tasobuild.target import load_target  # noqa: E402


def train_on_this_machine(cc: str, cflags: list[str], cache_dir: Path, synthetic_convs: tuple[int, ...],
                          synthetic_ops: int, seed: int, per_function: int = 40,
                          networks: tuple[str, ...] = TRAIN_NETWORKS, progress: bool = True) -> tuple[CostModel, str]:
    """(the model, the sample CSV text) for this machine and flag set."""
    calls = training_calls(synthetic_convs, synthetic_ops, per_function, seed=seed, networks=networks)
    measure_into_cache(calls, cc, cflags, cache_dir, progress)
    fingerprint = fingerprint_of(cc, cflags)
    digest = kernel_digest()
    with CostCache(cache_dir) as cache:
        costs = cache.get_many([CostKey(fingerprint.digest, digest, c.key()) for c in calls])
    rows = [(c, costs[k].median_ms, costs[k].spread_ms, costs[k].reps)
            for c in calls if (k := CostKey(fingerprint.digest, digest, c.key())) in costs]
    trained_on = {
        "features": FEATURE_VERSION,
        "fingerprint": fingerprint.as_dict(),
        "kernel_digest": digest,
        "networks": list(networks),
        "synthetic": {"convs": dict(zip((m.name for m in MIXES), synthetic_convs)), "ops": synthetic_ops,
                      "seed": seed, "per_function": per_function},
        "samples": len(rows),
        "functions": sorted({c.function for c, *_ in rows}),
    }
    model = train([Sample(c, ms) for c, ms, _, _ in rows], trained_on)
    return model, write_samples(rows)


def main() -> int:
    host = load_target("host", REPO)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default=host.cc)
    ap.add_argument("--cflags", default=shlex.join(host.cflags), help="default: the host target's flags")
    ap.add_argument("--cache-dir", type=Path, default=None, help="cost cache (default: the user cost cache)")
    ap.add_argument("--out", type=Path, default=REPO / "tasobuild" / "data")
    ap.add_argument("--synthetic-convs", default="200",
                    help="conv layers of each synthetic mix, comma-separated in MIXES order (broad, real, deep); "
                         "the shipped model: broad alone (see BENCHMARKS.md for the others)")
    ap.add_argument("--synthetic-ops", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-function", type=int, default=60, help="cap on the calls of each non-conv function")
    ap.add_argument("--networks", default=",".join(TRAIN_NETWORKS), help="training networks (never the evaluated ones)")
    args = ap.parse_args()
    start = time.perf_counter()
    convs = tuple(int(n) for n in args.synthetic_convs.split(","))
    model, samples = train_on_this_machine(args.cc, shlex.split(args.cflags), args.cache_dir or cache_dir(),
                                           convs, args.synthetic_ops, args.seed, args.per_function,
                                           tuple(args.networks.split(",")), progress=sys.stderr.isatty())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / MODEL_FILE).write_text(model.to_json(), encoding="utf-8")
    (args.out / SAMPLES_FILE).write_text(samples, encoding="utf-8")
    sigmas = ", ".join(f"{f.removeprefix('tb_')} {2 ** r.sigma - 1:.0%}" for f, r in sorted(model.functions.items()))
    print(f"trained on {model.trained_on['samples']} samples in {time.perf_counter() - start:.0f} s; "
          f"wrote {args.out / MODEL_FILE} and {args.out / SAMPLES_FILE}")
    print(f"cross-validated typical error per function: {sigmas}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
