"""One self-contained HTML file from the JSON a demo run leaves in its folder.

Input: `summary` (the dict in DIR/summary.json, sections optional) and the sweep rows. Images are
inline base64 PNGs, so the file can be mailed on its own. A short script records on <body> how
many images decoded (`data-images="k/n"`), which the Chromium test reads back.
"""
from __future__ import annotations

import base64
import html

from . import plots

CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}
.ok{color:#167516;font-weight:bold}.bad{color:#b00;font-weight:bold}img{max-width:100%}
"""

SCRIPT = """window.addEventListener('load', function () {
  var im = Array.prototype.slice.call(document.images);
  var ok = im.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + im.length);
});"""


def _e(v) -> str:
    return html.escape(str(v))


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.{digits}g}"
        return f"{v:,.{digits}f}".rstrip("0").rstrip(".") if "." in f"{v:.{digits}f}" else f"{v:,}"
    return _e(v)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_num(c) if not isinstance(c, str) else _e(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f'<p class="note">({_e(alt)}: no data in this run)</p>'
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'


def _pct(v) -> str:
    return "—" if v is None else f"{100 * float(v):.2f} %"


def _accuracy(s: dict, sweep: list[dict]) -> str:
    a = s.get("accuracy") or {}
    out = ["<h2>Accuracy (Fashion-MNIST test set)</h2>"]
    if a:
        rows = [["FP32 (" + a.get("fp32_checkpoint", "default-fp32") + ")", _pct(a.get("fp32")), a.get("images_fp32")],
                ["Po2, quantized PyTorch model (float64, exact)", _pct(a.get("po2_torch")), a.get("images_compare")],
                ["Po2, golden integer simulator", _pct(a.get("golden")), a.get("images_golden", a.get("images_compare"))]]
        out.append(_table(["model", "top-1", "images"], rows))
        mm = a.get("mismatches")
        if mm is not None:
            cls = "ok" if mm == 0 else "bad"
            out.append(f'<p>Images whose integer logits differ between the golden simulator and the quantized '
                       f'PyTorch model: <span class="{cls}">{_e(mm)}</span> of {_e(a.get("images_compare"))}.</p>')
    out.append("<h3>Exponent bits x pruning (hashiflex sweep)</h3>")
    out.append(_img(plots.sweep_plot(sweep), "accuracy vs exponent bits and pruning"))
    if sweep:
        out.append(_table(["exponent bits", "pruning", "top-1", "sparsity"],
                          [[int(r["exp_bits"]), float(r["prune"]), _pct(r["accuracy"]),
                            float(r.get("sparsity") or 0)] for r in sweep]))
        if sweep[0].get("note"):
            out.append(f'<p class="note">{_e(sweep[0]["note"])}</p>')
    return "\n".join(out)


def _verify(s: dict) -> str:
    v = s.get("verify")
    out = ["<h2>RTL verification (Verilator vs golden simulator, exact integer equality)</h2>"]
    if not v:
        return out[0] + '<p class="note">not run</p>'
    cls = "ok" if v.get("mismatches") == 0 else "bad"
    out.append(_table(["build", "checkpoint", "images", "mismatching images", "cycles/image (measured)",
                       "cycles/image (manifest)", "latency (cycles)"],
                      [[str(v.get("build", "")), str(v.get("checkpoint", "")), v.get("images"),
                        v.get("mismatches"), v.get("cycles_per_image"), v.get("expected_cycles_per_image"),
                        v.get("latency_cycles")]]))
    out.append(f'<p>Result: <span class="{cls}">{"PASS" if v.get("mismatches") == 0 else "FAIL"}</span>'
               f'{_e(" — " + v["note"]) if v.get("note") else ""}</p>')
    return "\n".join(out)


def _estimate_rows(e: dict) -> list[list]:
    return [["images/s", e.get("images_per_s")], ["area (mm^2)", e.get("area_mm2")],
            ["energy (pJ/image)", e.get("energy_pj_per_image")], ["clock (GHz)", e.get("clock_ghz")],
            ["adders", e.get("adders")], ["adder bits", e.get("adder_bits")]]


def _cost(s: dict) -> str:
    out = ["<h2>Cost of the demo network (7nm model, Yosys-calibrated)</h2>"]
    e = s.get("estimate")
    if not e:
        return out[0] + '<p class="note">not run</p>'
    out.append(_table(["figure", "value"], _estimate_rows(e)))
    layers = [{"name": L.get("name"), "area_mm2": L["area_mm2"] if L.get("area_mm2") is not None
               else (L["area_um2"] / 1e6 if L.get("area_um2") is not None else None)} for L in e.get("layers") or []]
    out.append(_img(plots.area_by_layer_plot(layers), "area by layer"))
    bal = s.get("pareto") or {}
    out.append(_img(plots.pareto_plot(bal.get("front") or bal.get("pareto") or [], e), "images/s vs area"))
    if bal.get("front"):
        out.append('<p class="note">Pareto front of the balancer (model formats; docs/cost.md says which of them '
                   "today's RTL generates).</p>")
    return "\n".join(out)


def _mbv2(s: dict) -> str:
    out = ["<h2>MobileNetV2-224 beside the paper</h2>"]
    rows, bars = [], []
    for key, label in (("estimate_224_npu", "ours: hardened + NPU (model)"),
                       ("estimate_224_hardened", "ours: fully hardened (model)")):
        e = s.get(key)
        if e:
            rows.append([label, e.get("images_per_s"), e.get("area_mm2"), e.get("energy_pj_per_image"),
                         e.get("clock_ghz")])
            bars.append((label.replace(" (model)", ""), float(e.get("images_per_s") or 0), "ours"))
    rows += [["paper: hardened + NPU (cited, arXiv 2512.12847)", 1.21e6, None, None, None],
             ["paper: fully hardened (cited)", 4.0e6, None, None, None],
             ["paper's GPU baseline (cited, derived 1.21M/20)", 6.05e4, None, None, None]]
    bars += [("paper + NPU (cited)", 1.21e6, "cited"), ("paper hardened (cited)", 4.0e6, "cited"),
             ("GPU (cited)", 6.05e4, "cited")]
    cpu = s.get("cpu_baseline") or {}
    if cpu.get("images_per_s"):
        rows.append([f"this machine's CPU, float32 PyTorch (measured, {cpu.get('threads', '?')} threads)",
                     cpu["images_per_s"], None, None, None])
        bars.append(("CPU float32 (measured)", float(cpu["images_per_s"]), "measured"))
    out.append(_table(["design", "images/s", "area (mm^2)", "energy (pJ/image)", "clock (GHz)"], rows))
    out.append(_img(plots.comparison_plot(bars), "MobileNetV2-224 throughput comparison"))
    out.append('<p class="note">Our rows are the cost model of hashiflex-generated designs (random Po2 weights at '
               'the stated pruning), not silicon; the paper rows are cited from its abstract; the CPU row is '
               'measured in this run.</p>')
    return "\n".join(out)


def _finetune(s: dict) -> str:
    f = s.get("finetune")
    out = ["<h2>Head-only fine-tuning for a new task (new NPU weight image)</h2>"]
    if not f:
        return out[0] + '<p class="note">not run</p>'
    out.append(_table(["figure", "value"], [[str(k), v if not isinstance(v, (dict, list)) else str(v)]
                                            for k, v in f.items() if not isinstance(v, (dict, list))]))
    return "\n".join(out)


def _steps(s: dict) -> str:
    steps = s.get("steps") or []
    if not steps:
        return ""
    return "<h2>Run</h2>" + _table(["step", "seconds", "result"],
                                   [[st.get("name", ""), st.get("seconds"), str(st.get("result", ""))]
                                    for st in steps])


def render(summary: dict, sweep: list[dict]) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>hashiflex report</title>"
             f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
             "<h1>hashiflex report</h1>",
             f"<p class='note'>{_e(summary.get('description', 'HaShiFlex flow on Fashion-MNIST'))}</p>",
             _accuracy(summary, sweep), _verify(summary), _cost(summary), _mbv2(summary), _finetune(summary),
             _steps(summary), "</body></html>"]
    return "\n".join(parts)
