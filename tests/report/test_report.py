"""The HTML report renders in headless Chromium: not blank, every image decodes.

Chromium is a test requirement (scripts/setup.sh installs Debian's `chromium`); the test fails,
never skips, without it.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hashiflex.cli import main

SUMMARY = {
    "accuracy": {"fp32": 0.93, "golden": 0.925, "po2_torch": 0.925, "mismatches": 0, "images_compare": 1000,
                 "images_fp32": 10000},
    "verify": {"images": 100, "mismatches": 0, "cycles_per_image": 232, "expected_cycles_per_image": 232,
               "latency_cycles": 900, "build": "b"},
    "estimate": {"images_per_s": 1.2e6, "area_mm2": 3.2, "energy_pj_per_image": 1000.0, "clock_ghz": 1.0,
                 "adders": 300000, "adder_bits": 3000000,
                 "layers": [{"name": f"conv{i}", "area_um2": 1e5 * i + 5e4} for i in range(20)]},
    "pareto": {"front": [{"images_per_s": 1e5 * 2 ** i, "area_mm2": 1.0 + i} for i in range(6)]},
    "estimate_224_npu": {"images_per_s": 4.1e6, "area_mm2": 100.0}, "cpu_baseline": {"images_per_s": 80.0},
    "finetune": {"accuracy": 0.95, "classes": 10}, "steps": [{"name": "a", "seconds": 1.0, "result": "x"}],
}
SWEEP = "exp_bits,prune,accuracy,sparsity,seconds\n" + "".join(
    f"{e},{p},{0.9 - 0.01 * p - 0.005 * (4 - e)},{p},1\n" for e in (2, 3, 4) for p in (0, 0.25, 0.5, 0.75))


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert exe, "chromium not found: install it with 'apt-get install chromium' (scripts/setup.sh does)"
    return exe


def test_report_renders_in_chromium(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "sweep.csv").write_text(SWEEP)
    assert main(["report", str(tmp_path)]) == 0
    page = tmp_path / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text.replace("https://arxiv", "")  # self-contained
    n_img = text.count("<img ")
    assert n_img == 4  # sweep, area by layer, Pareto, MobileNetV2-224 comparison
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(args + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert f'data-images="{n_img}/{n_img}"' in dom, dom[:300]
    shot = tmp_path / "shot.png"
    subprocess.run(args + ["--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert (px < 200).mean() > 0.02 and px.std() > 20  # text and plots, not a blank page


def test_report_without_summary_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hashiflex demo" in err[0]
    (tmp_path / "summary.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    assert not (tmp_path / "report.html").exists()
