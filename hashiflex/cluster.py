"""Ray, for work that outgrows one machine: sweep points and verification shards as Ray tasks.

Ray is an optional extra (`pip install -e '.[ray]'`); nothing here imports it until `connect`
is called, so a run without `--ray` never loads it. Tasks are plain Ray tasks (not Ray Tune): a
sweep point and an image shard are each one independent function call whose result is a small
record, so the trial scheduling, early stopping and search algorithms of Tune would go unused,
and plain tasks keep the serial and the distributed run the same code path. Each task asks for
one CPU and is retried by Ray when its worker dies (`max_retries`); results come back in
submission order. docs/cluster.md says how to start a cluster and what travels where.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Callable, Iterable  # noqa: UP035

from .errors import UserError

RETRIES = 3          # Ray re-runs a task this many times when its worker process dies


def _reachable(address: str) -> str | None:
    """Why host:port does not answer a TCP connect within a few seconds, or None. Ray itself
    retries an unreachable head for minutes; this fails fast with one line instead."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return "give host:port, 'auto' or 'local'"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


def connect(address: str | None):
    """The ray module, connected to the cluster at `address` ('auto': the one `ray start` runs on
    this machine; 'local': a private one-machine cluster started here); a one-line UserError when
    Ray is not installed or the address does not answer."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install -e '.[ray]' (or drop --ray to run here)") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    hint = "start one with 'ray start --head' (docs/cluster.md) or drop --ray"
    if address not in (None, "auto", "local"):
        why = _reachable(address)
        if why is not None:
            raise UserError(f"cannot reach a Ray cluster at {address!r} ({why}): {hint}")
    if ray.is_initialized():     # one cluster per command; a test may have connected before
        ray.shutdown()
    kw: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        if address in (None, "local"):
            ray.init(**kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot reach a Ray cluster at {address!r} ({msg[:160]}): {hint}") from None
    return ray


def _call(fn: Callable, *a):
    """Run fn in a worker: a UserError comes back as its one line, not as a remote traceback."""
    try:
        return True, fn(*a)
    except UserError as e:
        return False, str(e)


def ray_map(ray, fn: Callable, args: Iterable[tuple], num_cpus: float = 1, on_result: Callable | None = None,
            retries: int = RETRIES, num_gpus: float = 0) -> list:
    """fn(*a) for every a in `args` as Ray tasks (`num_cpus` and `num_gpus` each, retried when a worker dies);
    results in the order of `args`. `on_result(i, r)` is called as each finishes (any order); a
    UserError in a task is raised here with its own message."""
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries, retry_exceptions=False)(_call)
    refs = [remote.remote(fn, *a) for a in args]
    index = {r: i for i, r in enumerate(refs)}
    out: list = [None] * len(refs)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            i = index[ref]
            ok, value = ray.get(ref)
            if not ok:
                raise UserError(value)
            out[i] = value
            if on_result is not None:
                on_result(i, value)
    return out


__all__ = ["RETRIES", "connect", "ray_map"]
