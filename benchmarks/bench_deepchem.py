"""CPU-seconds per training epoch: DeepChem 2.8's WeaveModel against qmlrp's ``engine.fit``.

    python benchmarks/bench_deepchem.py [--molecules 2000] [--epochs 4] [--rounds 3]
        [--deepchem-python benchmarks/.venv-deepchem/bin/python] [--no-batch-norm-variant] [--cpus 0]

Both train the same molecules (the first ``--molecules`` of ``data/features``, alpha labels) with
the same architecture -- two weave modules of width 50 (A->A, P->A, A->P, P->P all 50), a per-atom
layer of 128, the 11-Gaussian histogram, one dense ReLU layer of 2000 and a linear output; Adam,
learning rate 1e-3, batch 64 -- on the same input features (qmlrp's 21 atom and 13 pair features;
DeepChem gets them as ``WeaveMol`` objects with all ordered pairs, as its ``WeaveFeaturizer``
makes them with ``max_pair_distance=None``). What stays DeepChem's own is its formulation: ordered
pairs (i, j) and (j, i) and i == i, tanh and BatchNorm on the per-atom layer (and, in its default
``batch_normalize=True``, BatchNorm in every weave layer and after the dense layer; the variant
``deepchem-nobn`` turns that off, which makes DeepChem cheaper), L2 loss. qmlrp trains with its
own parameters (``params.yaml`` ``train``, epochs and batch size overridden).

Each configuration runs as a separate process, ``--rounds`` times, interleaved (A B, B A, ...).
Each process trains ``--epochs`` epochs and, after each, predicts 64 molecules (qmlrp's ``fit``
validates every epoch; DeepChem is given the same work). Reported per configuration:

* ``CPU-s/epoch (118k)``: the process's CPU time (user + system, all threads) per epoch after the
  first (which compiles or traces), median over epochs and rounds, times 118,000 / molecules;
* ``process CPU-s``: the whole process (imports, featurised data, compilation, all epochs), from
  the operating system's accounting of the finished child (``wait4``);
* the ratio qmlrp / DeepChem, per round, and its median.

DeepChem lives in a benchmark-only virtual environment (see ``benchmarks/README.md``); the
project does not need it. The molecules are handed to it as a ``.npz`` of plain arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCH_MOLECULES = 118_000
ROOT = Path(__file__).resolve().parent.parent
RATIO_BAR = 0.25
"""Issue 22's bar: qmlrp's CPU-seconds per epoch at most this fraction of DeepChem's default WeaveModel's."""


# -- workers (one process each) ----------------------------------------------------------------
def worker_qmlrp(data: str, epochs: int, batch: int) -> dict:
    from qmlrp.training.backend import use_jax_backend

    use_jax_backend()
    from dataclasses import replace

    import numpy as np

    from qmlrp.features.store import FeatureStore
    from qmlrp.training.config import TrainConfig
    from qmlrp.targets import get_target
    from qmlrp.training.engine import ModelRun, fit

    arrays = np.load(data)
    store = FeatureStore.open(str(arrays["features"]))
    n = int(arrays["n_molecules"])
    y = np.full(len(store), np.nan)
    y[:n] = arrays["y"]
    config = replace(TrainConfig.load(ROOT / "params.yaml"), epochs=epochs, batch_size=batch,
                     early_stopping_patience=epochs + 1, time_limit_minutes=None)
    positions = np.arange(n)
    run = ModelRun("alpha", get_target("alpha"), y, positions, positions[:64], config.seed)
    marks = []  # (process, main thread) CPU-s after each epoch
    fit(store, [run], config, log=False,
        on_epoch=lambda k, row: marks.append((time.process_time(), time.thread_time())))
    process, main_thread = np.diff(np.array(marks), axis=0).T
    return {"epoch_cpu": list(process), "epoch_main_cpu": list(main_thread)}


def worker_deepchem(data: str, epochs: int, batch: int, batch_norm: bool) -> dict:
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import deepchem as dc
    from deepchem.feat.mol_graphs import WeaveMol

    arrays = np.load(data)
    n_atoms, atoms, pairs, pair_atoms = (arrays[k] for k in ("n_atoms", "atom_features", "pair_features", "pair_atoms"))
    pair_counts = n_atoms * (n_atoms - 1) // 2
    a_off = np.concatenate([[0], np.cumsum(n_atoms)])
    p_off = np.concatenate([[0], np.cumsum(pair_counts)])
    mols = []
    for m, n in enumerate(n_atoms):
        nodes = atoms[a_off[m]:a_off[m + 1]]
        full = np.zeros((n, n, pairs.shape[1]), np.float32)  # all ordered pairs, i == j included
        local = pair_atoms[p_off[m]:p_off[m + 1]]
        feats = pairs[p_off[m]:p_off[m + 1]]
        full[local[:, 0], local[:, 1]] = feats
        full[local[:, 1], local[:, 0]] = feats
        c0, c1 = np.meshgrid(np.arange(n), np.arange(n))  # as WeaveFeaturizer: edges (2, n*n)
        edges = np.stack([c1.ravel(), c0.ravel()])
        mols.append(WeaveMol(nodes, full[edges[0], edges[1]], edges))
    X = np.empty(len(mols), dtype=object)
    X[:] = mols
    y = arrays["y"].reshape(-1, 1).astype(np.float32)
    train = dc.data.NumpyDataset(X, y)
    val = dc.data.NumpyDataset(X[:64], y[:64])
    model = dc.models.WeaveModel(
        n_tasks=1, n_atom_feat=[atoms.shape[1], 50], n_pair_feat=[pairs.shape[1], 50], n_hidden=50,
        n_graph_feat=128, n_weave=2, fully_connected_layer_sizes=[2000], dropouts=0.0, mode="regression",
        batch_size=batch, learning_rate=1e-3, batch_normalize=batch_norm)
    marks = []
    for _ in range(epochs):
        model.fit(train, nb_epoch=1)
        model.predict(val)
        marks.append(time.process_time())
    return {"epoch_cpu": list(np.diff(marks))}


# -- orchestration ------------------------------------------------------------------------------
def export(features: str, table: str, n: int, path: str) -> None:
    """The first ``n`` molecules as plain arrays (local pair indices) for both workers."""
    import numpy as np

    from qmlrp.features.store import FeatureStore
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels

    store = FeatureStore.open(features)
    n = min(n, len(store))
    positions = np.arange(n)
    batch = store.batch(positions)
    first = store.atom_offsets[positions] - store.atom_offsets[0]
    local = batch.pair_atoms - first[batch.pair_molecule][:, None]
    y = load_labels(store, table, get_target("alpha"))[:n]
    np.savez(path, features=np.array(str(Path(features).resolve())), n_molecules=n,
             n_atoms=store.n_atoms[:n].astype(np.int64), atom_features=batch.atom_features.astype(np.float32),
             pair_features=batch.pair_features.astype(np.float32), pair_atoms=local.astype(np.int64),
             y=np.asarray(y, np.float64))


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0"`` or ``"0,1"`` or ``"0-3"`` -> CPU numbers for ``os.sched_setaffinity``; None: no pinning."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def run_worker(python: str, kind: str, data: str, epochs: int, batch: int, src: Path = ROOT / "src",
               cpus: set[int] | None = None) -> dict:
    """One worker process; ``cpus``: the CPUs it may run on (set before it starts, so XLA's and
    TensorFlow's thread pools are sized to them), the same for every configuration."""
    worker = "qmlrp" if kind.startswith("qmlrp") else kind
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--data", data, "--epochs", str(epochs),
           "--batch", str(batch)]
    env = dict(os.environ)
    if worker == "qmlrp":
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        wall = time.perf_counter()
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT, preexec_fn=pin)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - wall
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{kind} worker failed ({proc.returncode}):\n{err.read()[-3000:]}")
    result = json.loads(lines[-1])
    result.update(process_cpu=usage.ru_utime + usage.ru_stime, wall=wall)
    return result


def machine_line() -> str:
    """The CPU the ratio was measured on: model, cores, widest vector ISA (the ratio moves with it:
    0.29 on an AVX-512 machine, 0.23 on an AVX2 one, 2026-12), load average."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE/other" if flags else "unknown ISA"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"machine: {model}, {os.cpu_count()} logical CPUs, {isa}; load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--table", default="data/qm9.parquet")
    parser.add_argument("--molecules", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deepchem-python", default=str(ROOT / "benchmarks" / ".venv-deepchem" / "bin" / "python"))
    parser.add_argument("--no-batch-norm-variant", action="store_true",
                        help="skip DeepChem with batch_normalize=False")
    parser.add_argument("--baseline-src", help="also run fit() from this other checkout's src/ (row qmlrp-baseline)")
    parser.add_argument("--cpus", help="run every worker on these CPUs only (e.g. 0: one core each, for "
                        "qmlrp and DeepChem alike); default: all the process may use")
    parser.add_argument("--worker", choices=["qmlrp", "deepchem", "deepchem-nobn"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "qmlrp":
            result = worker_qmlrp(args.data, args.epochs, args.batch)
        else:
            result = worker_deepchem(args.data, args.epochs, args.batch, args.worker == "deepchem")
        print(json.dumps(result), flush=True)
        return

    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch compiles and is not counted)")
    if not Path(args.deepchem_python).exists():
        raise SystemExit(f"{args.deepchem_python}: no DeepChem environment (see benchmarks/README.md)")
    kinds = {"qmlrp": sys.executable, "deepchem": args.deepchem_python}
    if args.baseline_src:
        kinds["qmlrp-baseline"] = sys.executable
    if not args.no_batch_norm_variant:
        kinds["deepchem-nobn"] = args.deepchem_python
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    cpus = parse_cpus(args.cpus)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "molecules.npz")
        export(args.features, args.table, args.molecules, data)
        n = int(__import__("numpy").load(data)["n_molecules"])

        def per_epoch(res: dict) -> float:
            """CPU-s per 118k-molecule epoch: the median counted epoch, scaled."""
            return statistics.median(res["epoch_cpu"]) * EPOCH_MOLECULES / n

        for r in range(args.rounds):
            order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
            for kind in order:
                src = Path(args.baseline_src) if kind == "qmlrp-baseline" else ROOT / "src"
                res = run_worker(kinds[kind], kind, data, args.epochs, args.batch, src, cpus)
                results[kind].append(res)
                print(f"round {r + 1} {kind:>13}: {per_epoch(res):7.1f} CPU-s/epoch (118k), epochs "
                      f"{', '.join(f'{c:.2f}' for c in res['epoch_cpu'])} CPU-s; process {res['process_cpu']:.1f} "
                      f"CPU-s, {res['wall']:.1f} s wall", file=sys.stderr, flush=True)

    print(machine_line() + (f"; every worker pinned to CPUs {args.cpus}" if args.cpus else
                            f"; workers on all {len(os.sched_getaffinity(0))} CPUs this process may use"))
    print(f"{n} molecules, batch {args.batch}, {args.epochs} epochs per process (first not counted), "
          f"{args.rounds} interleaved rounds")
    print(f"{'configuration':>14} {'CPU-s/epoch (118k)':>19} {'process CPU-s':>14} {'qmlrp / this':>13}")
    ours = [per_epoch(r) for r in results["qmlrp"]]
    ratios: dict[str, list[float]] = {}  # kind -> qmlrp / kind, round by round
    for kind, res in results.items():
        per = [per_epoch(x) for x in res]
        ratios[kind] = [o / p for o, p in zip(ours, per)]
        print(f"{kind:>14} {statistics.median(per):>19.1f} {statistics.median(x['process_cpu'] for x in res):>14.1f} "
              f"{statistics.median(ratios[kind]):>13.3f}")
    if "deepchem" in ratios:
        by_round = ratios["deepchem"]
        print(f"qmlrp / deepchem by round: {', '.join(f'{x:.3f}' for x in by_round)}; "
              f"bar <= {RATIO_BAR}: {'met' if statistics.median(by_round) <= RATIO_BAR else 'not met'} on this machine")


if __name__ == "__main__":
    main()
