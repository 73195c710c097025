"""Adder graphs on real layer matrices: naive trees vs ours (hashiflex.ir.adder_graph) vs da4ml.

    nice -n 19 python benchmarks/adder_graph_vs_da4ml.py                      # default-po2 + MNv2-224
    nice -n 19 python benchmarks/adder_graph_vs_da4ml.py --arch-layers all --no-da4ml

Matrices: every pointwise / full conv (groups == 1) of a checkpoint's IR (`--checkpoint`,
default `default-po2` when that file exists) and the 1x1 layers of mobilenetv2-224 with random
Po2 weights (exp_bits 3, 50 % pruned; `--arch-layers`, a comma list of op names or `all`).
Every solver runs in its own subprocess so its peak memory (VmHWM) and time are its own;
each child is capped (RLIMIT_AS, `--mem-gb`) and killed after `--timeout` seconds, reported as
'out of memory' / 'timeout'. All adder bits use one rule: the width (intervals.bits_for) of each
adder's exact result interval; da4ml's from the QInterval of each add/sub op (value / step).
da4ml (LGPL, `pip install da4ml`) is only called through its public API (`da4ml.cmvm.solve`).
Both solvers' results are checked exact (ours: evaluate_graph on random inputs; da4ml: its
product kernel equals the matrix).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_ARCH_LAYERS = ("features.0,features.2.conv.0,features.3.conv.2,features.8.conv.0,features.8.conv.2,"
                       "features.12.conv.0,features.15.conv.0,features.17.conv.2,features.18")


# -- workers (run in a child process) -----------------------------------------------------------
def _work_ours(m, lo, hi) -> dict:
    from hashiflex.ir.adder_graph import build_graph, evaluate_graph, graph_cost

    t = time.perf_counter()
    g = build_graph(m)
    dt = time.perf_counter() - t
    x = np.random.default_rng(0).integers(lo, hi + 1, size=(16, m.shape[1]))
    exact = bool(np.array_equal(evaluate_graph(g, x), x @ m.T))
    return dict(graph_cost(g, lo, hi).as_dict(), seconds=dt, exact=exact)


def _work_da4ml(m, lo, hi) -> dict:
    from da4ml.cmvm import solve

    from hashiflex.ir.intervals import bits_for

    t = time.perf_counter()
    # da4ml computes vec @ kernel; the kernel must be C-contiguous float32 [inputs, outputs]
    p = solve(np.ascontiguousarray(m.T, dtype=np.float32), qintervals=[(float(lo), float(hi), 1.0)] * m.shape[1])
    dt = time.perf_counter() - t
    adders = bits = 0
    for sol in p.solutions:
        for op in sol.ops:
            if op.opcode in (0, 1):   # 0: a + (b << s), 1: a - (b << s); others are copies here
                q = op.qint
                adders += 1
                bits += bits_for(round(q.min / q.step), round(q.max / q.step))
    exact = bool(np.array_equal(p.kernel, m.T))
    if not exact:   # it may drop inputs whose range is [0, 0]: then check on inputs in range
        x = np.random.default_rng(0).integers(lo, hi + 1, size=(4, m.shape[1]))
        exact = all(np.array_equal(np.asarray(p(v.astype(np.float64))), v @ m.T) for v in x)
    return {"adders": adders, "bits": bits, "depth": int(p.latency[1]), "seconds": dt, "exact": exact}


def _peak_mb(pid="self") -> float:
    """VmHWM: peak resident memory of this process image (reset by exec, unlike ru_maxrss,
    which a child inherits from the parent it was forked from)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _worker(kind: str, path: str, lo: int, hi: int) -> None:
    m = np.load(path)
    out = (_work_ours if kind == "ours" else _work_da4ml)(m, lo, hi)
    print(json.dumps(dict(out, mb=_peak_mb())))


# -- parent ------------------------------------------------------------------------------------
def run_child(kind: str, path: str, lo: int, hi: int, mem_gb: float, timeout: float) -> dict:
    """Run one solver in a capped subprocess; its own peak RSS via wait4."""
    lim = int(mem_gb * 2 ** 30)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        os.nice(19)

    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, path, str(lo), str(hi)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=cap, env=env)
    t0, mb = time.monotonic(), 0.0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        mb = max(mb, _peak_mb(proc.pid))
        if time.monotonic() - t0 > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"status": "timeout", "seconds": timeout, "mb": mb}
        time.sleep(0.2)
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return dict(json.loads(out.strip().splitlines()[-1]), status="ok")
    oom = "MemoryError" in err or "bad_alloc" in err or "memory" in err.lower()
    return {"status": "out of memory" if oom else f"failed: {err.strip().splitlines()[-1:] }", "mb": mb}


def matrices(args):
    from hashiflex.ir.adder_graph import layer_matrix

    progs = []
    ck = args.checkpoint
    if ck is None and (Path(__file__).resolve().parents[1] / "hashiflex/checkpoints/default-po2.pt").is_file():
        ck = "default-po2"
    if ck:
        from hashiflex.ir.build import program_from_checkpoint
        progs.append((Path(ck).stem, program_from_checkpoint(ck), None))
    else:
        print("(no default-po2 checkpoint yet: only the random-weight mobilenetv2-224 layers)", file=sys.stderr)
    if args.arch_layers:
        from hashiflex.ir.build import program_from_qmodel, random_qmodel
        from hashiflex.quant.config import QuantConfig
        q = random_qmodel("mobilenetv2-224", QuantConfig(exp_bits=3, prune=0.5))
        want = None if args.arch_layers == "all" else set(args.arch_layers.split(","))
        progs.append(("mnv2-224-rand", program_from_qmodel(q), want))
    for tag, prog, want in progs:
        for op in prog.ops:
            got = layer_matrix(prog, op)
            if got is not None and (want is None or op.name in want):
                yield f"{tag}:{op.name}", *got


def fmt(r: dict | None, key: str) -> str:
    if r is None:
        return "-"
    if r.get("status", "ok") != "ok":
        return r["status"] if key == "adders" else ""
    v = r[key]
    return f"{v:.1f}" if isinstance(v, float) else f"{v:,}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "NPY", "LO", "HI"), help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", default=None, help="checkpoint name or path (default: default-po2 if present)")
    ap.add_argument("--arch-layers", default=DEFAULT_ARCH_LAYERS, help="mobilenetv2-224 op names, 'all' or ''")
    ap.add_argument("--no-da4ml", action="store_true")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per solver and matrix")
    ap.add_argument("--mem-gb", type=float, default=6.0, help="address-space cap per solver")
    ap.add_argument("--da4ml-max-nonzero", type=int, default=None,
                    help="skip da4ml on larger matrices (reported 'skipped'), to bound the run time")
    args = ap.parse_args(argv)
    if args.worker:
        kind, path, lo, hi = args.worker
        return _worker(kind, path, int(lo), int(hi))

    from hashiflex.ir.adder_graph import build_graph, graph_cost, naive_depth

    cols = ["layer", "O x N", "nonzero", "naive adders", "naive bits", "depth naive",
            "ours adders", "ours bits", "ours depth", "ours s", "ours MB",
            "da4ml adders", "da4ml bits", "da4ml depth", "da4ml s", "da4ml MB"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols), flush=True)
    tot = {"naive": [0, 0], "ours": [0, 0], "da4ml": [0, 0], "ours_on_da4ml": [0, 0], "naive_on_da4ml": [0, 0]}
    wall = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name, m, lo, hi in matrices(args):
            m = np.asarray(m, dtype=np.int64)
            path = os.path.join(tmp, "m.npy")
            np.save(path, m)
            naive = graph_cost(build_graph(m, cse=False), lo, hi).as_dict()
            ours = run_child("ours", path, lo, hi, args.mem_gb, args.timeout)
            da = None
            if args.da4ml_max_nonzero is not None and int((m != 0).sum()) > args.da4ml_max_nonzero:
                da = {"status": "skipped"}
            elif not args.no_da4ml:
                da = run_child("da4ml", path, lo, hi, args.mem_gb, args.timeout)
            if ours.get("status") == "ok" and not ours["exact"]:
                ours["status"] = "WRONG RESULT"
            if da is not None and da.get("status") == "ok" and not da["exact"]:
                da["status"] = "WRONG RESULT"
            row = [name, f"{m.shape[0]}x{m.shape[1]}", f"{int((m != 0).sum()):,}", f"{naive['adders']:,}",
                   f"{naive['bits']:,}", str(naive_depth(m))]
            row += [fmt(ours, k) for k in ("adders", "bits", "depth", "seconds", "mb")]
            row += [fmt(da, k) for k in ("adders", "bits", "depth", "seconds", "mb")]
            print("| " + " | ".join(row) + " |", flush=True)
            both = [("naive", naive), ("ours", ours if ours.get("status") == "ok" else None)]
            if da is not None and da.get("status") == "ok":
                both += [("da4ml", da), ("ours_on_da4ml", ours), ("naive_on_da4ml", naive)]
            for k, r in both:
                if r is not None:
                    tot[k][0] += r["adders"]
                    tot[k][1] += r["bits"]
    n, o = tot["naive"], tot["ours"]
    print(f"\nall matrices: naive {n[0]:,} adders / {n[1]:,} bits; ours {o[0]:,} / {o[1]:,} "
          f"({1 - o[0] / max(n[0], 1):.1%} fewer adders, {1 - o[1] / max(n[1], 1):.1%} fewer bits)")
    if tot["da4ml"][0]:
        d, od, nd = tot["da4ml"], tot["ours_on_da4ml"], tot["naive_on_da4ml"]
        print(f"where da4ml finished: naive {nd[0]:,} / {nd[1]:,}; ours {od[0]:,} / {od[1]:,}; "
              f"da4ml {d[0]:,} / {d[1]:,} (ours/da4ml bits {od[1] / d[1]:.3f})")
    print(f"wall time {time.monotonic() - wall:.0f} s")


if __name__ == "__main__":
    main()
