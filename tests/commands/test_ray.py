"""Ray (hashiflex.cluster): a real local cluster, head on 127.0.0.1 with 2 CPUs, started and stopped
here. A sweep on Ray equals the serial sweep byte for byte (also with a worker killed mid-run, and
when re-run after an interruption); verify's image shards on Ray equal the serial run."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hashiflex.cli import main

SWEEP = ["sweep", "--exp-bits-list", "2,3", "--prune-list", "0,0.5", "--epochs", "0.02", "--limit", "2000",
         "--test-limit", "500"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head` on 127.0.0.1 with 2 CPUs; its address; `ray stop` afterwards."""
    import ray

    port = _free_port()
    # The cluster and this process agree on no token authentication: a `ray.init()` elsewhere on this
    # machine (e.g. `hashiflex sweep --ray local`) leaves ~/.ray/auth_token, which a new head would
    # otherwise require and this driver would not present.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
                    "--temp-dir", str(temp)], check=True, env=env, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _sweep(out: Path, capfd, *extra) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    assert main([*SWEEP, "--out", str(out), *extra]) == 0
    capfd.readouterr()
    return (out / "sweep.csv").read_bytes()


def test_sweep_on_ray_equals_serial(cluster, tmp_path, capfd):
    serial = _sweep(tmp_path / "serial", capfd)
    on_ray = _sweep(tmp_path / "ray", capfd, "--ray", cluster, "--keep-checkpoints", str(tmp_path))
    assert on_ray == serial
    assert len(serial.decode().splitlines()) == 5     # a header and 4 points
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["e2_p0.5_s1.pt", "e2_p0_s1.pt", "e3_p0.5_s1.pt",
                                                            "e3_p0_s1.pt"]
    # an interrupted run re-run with the same --out: the finished points are not run again
    (tmp_path / "ray" / "points" / "e3_p0.5_s1.json").unlink()
    assert main([*SWEEP, "--out", str(tmp_path / "ray"), "--json"]) == 0
    import json
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert (r["points_run"], r["points_reused"]) == (1, 3)
    assert (tmp_path / "ray" / "sweep.csv").read_bytes() == serial


def test_sweep_survives_a_killed_worker(cluster, tmp_path, capfd):
    """One Ray worker running a sweep point is killed (SIGKILL); Ray re-runs its task and the CSV
    equals the serial run's."""
    serial = _sweep(tmp_path / "serial", capfd)
    killed = []

    def kill_one():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            ps = subprocess.run(["pgrep", "-f", "ray::_call"], capture_output=True, text=True).stdout.split()
            if ps:
                os.kill(int(ps[0]), signal.SIGKILL)
                killed.append(int(ps[0]))
            time.sleep(0.2)

    t = threading.Thread(target=kill_one)
    t.start()
    on_ray = _sweep(tmp_path / "ray", capfd, "--ray", cluster)
    t.join()
    assert killed, "no Ray worker was found running a sweep point"
    assert on_ray == serial


def test_verify_shards_on_ray_equal_serial(cluster, tmp_path):
    from hashiflex.cluster import connect
    from hashiflex.rtl import generate_rtl
    from hashiflex.verify import verify_build
    from rtl_progs import ProgBuilder

    b = ProgBuilder((2, 8, 8), seed=5)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    b.pool(b.conv(x, 6, k=1, pad=0))
    prog = b.program()
    generate_rtl(prog, tmp_path / "rtl")
    images = np.random.default_rng(0).integers(0, 256, (16, 2, 8, 8), dtype=np.uint8)
    serial = verify_build(tmp_path, images, prog=prog, jobs=2)
    on_ray = verify_build(tmp_path, images, prog=prog, jobs=2, ray=connect(cluster))
    assert serial["mismatches"] == on_ray["mismatches"] == 0
    assert on_ray["sim_processes"] == 2
    keep = ("images", "mismatched_values", "ports", "cycles_per_image", "latency_cycles", "expected_cycles_per_image")
    assert {k: on_ray[k] for k in keep} == {k: serial[k] for k in keep}


def test_ray_bad_address_is_one_line(tmp_path, capfd):
    (tmp_path / "o").mkdir()
    rc = main([*SWEEP, "--out", str(tmp_path / "o"), "--ray", f"127.0.0.1:{_free_port()}"])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "cannot reach a Ray cluster" in err, err
    assert not (tmp_path / "o" / "sweep.csv").exists()


def test_ray_not_installed_is_one_line(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray -> ImportError
    (tmp_path / "o").mkdir()
    rc = main([*SWEEP, "--out", str(tmp_path / "o"), "--ray"])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "pip install -e '.[ray]'" in err, err


def test_device_selection(monkeypatch):
    """--device: cpu is the default and what auto picks without a GPU; cuda without one is one line."""
    import torch

    from hashiflex.commands.common import resolve_device
    from hashiflex.errors import UserError

    assert resolve_device(None) == resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda"


def test_cuda_device_without_gpu_is_one_line(tmp_path, capfd):
    import torch

    if torch.cuda.is_available():
        pytest.fail("this test expects the CPU build of torch (constraints.txt)")
    rc = main(["quantize", "--out", str(tmp_path / "q.pt"), "--device", "cuda", "--epochs", "0"])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--device cuda" in err, err
    assert not (tmp_path / "q.pt").exists()


@pytest.mark.parametrize("argv, says", [
    (["--seed", "3"], "sweep takes --seeds LIST"),
    (["--seeds", "1,1"], "--seeds takes distinct seeds >= 0"),
])
def test_sweep_seed_options(tmp_path, capfd, argv, says):
    (tmp_path / "o").mkdir()
    rc = main([*SWEEP, "--out", str(tmp_path / "o"), *argv])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and says in err, err
    assert not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("rec, reused", [
    ({"accuracy": 0.9, "sparsity": 0.2, "seconds": 3.0}, True),
    ({"accuracy": 0.9, "sparsity": 0.2}, False),
    ({"accuracy": 0.9, "sparsity": 0.2, "seconds": "3"}, False),
    ({"accuracy": float("nan"), "sparsity": 0.2, "seconds": 3.0}, False),
    ({"accuracy": 1.5, "sparsity": 0.2, "seconds": 3.0}, False),
])
def test_a_point_file_is_reused_only_when_whole(tmp_path, rec, reused):
    """OUT/points/<point>.json is checked on read: a missing, retyped or out-of-range field means
    the point is run again, never trusted (and never a traceback)."""
    import json

    from hashiflex.commands.sweep import finished_point

    (tmp_path / "points").mkdir()
    (tmp_path / "points" / "p.json").write_text(json.dumps(dict(rec, config={"c": 1})))
    assert (finished_point(tmp_path, "p", {"c": 1}) is not None) == reused
    assert finished_point(tmp_path, "p", {"c": 2}) is None       # other settings: run again
