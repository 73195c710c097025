"""Process faults: SIGTERM and SIGHUP clean up like Ctrl-C (the staged build folder goes, exit
128 + signal, one line on stderr), and a closed or full standard output is one line, exit 2, no
traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HASHIFLEX_PROGRESS="0")


def _hf(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "hashiflex", *argv], stderr=subprocess.PIPE, env=ENV, **kw)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_termination_signal_cleans_up(tmp_path, sig):
    out = tmp_path / "new" / "build"
    p = _hf("compile", "--checkpoint", "small-po2", "--out", str(out), stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and p.poll() is None:   # the staged folder exists
        time.sleep(0.05)
    time.sleep(0.5)
    assert p.poll() is None, "compile finished before the signal"
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=120)
    num = getattr(signal, sig).value
    assert p.returncode == 128 + num, (p.returncode, err)
    assert err.decode().strip() == f"hashiflex: stopped by {sig}"
    assert not (tmp_path / "new").exists()   # the folders compile created are gone with the staged build


def test_closed_or_full_stdout_is_one_line(tmp_path):
    from hashiflex.cli import main
    assert main(["compile", "--checkpoint", "small-po2", "--out", str(tmp_path / "b"), "--no-rtl"]) == 0
    p = _hf("estimate", str(tmp_path / "b"), stdout=subprocess.PIPE)
    p.stdout.close()   # the reader goes away before the result is written
    _, err = p.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "cannot write the result to standard output" in lines[0], err
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            p = _hf("estimate", str(tmp_path / "b"), stdout=full)
            _, err = p.communicate(timeout=120)
        lines = err.decode().strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and "No space left" in lines[0], err


def test_outputs_only_replace_regular_files_and_never_an_input(tmp_path, tiny_fp32, capfd):
    """--out that is one of the command's inputs, or not a regular file, is refused before any work."""
    import shutil

    from hashiflex.cli import main
    ck = tmp_path / "fp32.pt"
    shutil.copy(tiny_fp32, ck)
    before = ck.read_bytes()
    for argv, says in ((["quantize", "--checkpoint", str(ck), "--out", str(ck)], "also an input"),
                       (["npu-image", "--out", "/dev/null"], "not a regular file")):
        capfd.readouterr()
        assert main(argv) == 2
        err = capfd.readouterr().err.strip()
        assert err.count("\n") == 0 and says in err, err
    assert ck.read_bytes() == before
