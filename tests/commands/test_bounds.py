"""Upper bounds of numeric options (commands/bounds.py: UPPER, shown in --help, checked before any
command runs) and the size estimate compile gives before generating RTL that would be too big."""
import pytest

from hashiflex.cli import main
from hashiflex.commands import compile as compile_cmd
from hashiflex.commands.parser import UPPER, build_parser


@pytest.mark.parametrize("argv, says", [
    (["compile", "--out", "{out}", "--parallelism", "5000"], "--parallelism must be at most 4096 (got 5000)"),
    (["verify", "{out}", "--jobs", "1000"], "--jobs must be at most 256"),
    (["train", "--out", "{out}/f.pt", "--epochs", "1e9"], "--epochs must be at most 1000"),
    (["train", "--out", "{out}/f.pt", "--epochs", "inf"], "--epochs must be a finite number"),
    (["quantize", "--out", "{out}/q.pt", "--batch-size", "1000000"], "--batch-size must be at most 65536"),
    (["compile", "--out", "{out}", "--npu-lanes", "100000"], "--npu-lanes must be at most 16384"),
    (["estimate", "{out}", "--target-ips", "1e20"], "--target-ips must be at most"),
    (["estimate", "{out}", "--clock-ghz", "1e9"], "--clock-ghz must be at most 20"),
    (["compile", "--out", "{out}", "--target-ips", "1e6", "--clock-ghz", "1e9"], "--clock-ghz must be at most 20"),
    (["demo", "--out", "{out}", "--images", "1000000000"], "--images must be at most 1e+06"),
])
def test_upper_bounds_are_one_line(tmp_path, capfd, argv, says):
    argv = [a.replace("{out}", str(tmp_path / "o")) for a in argv]
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and says in err, err
    assert not (tmp_path / "o").exists()


def test_bounds_are_in_the_help():
    text = {a.dest: a.help for p in build_parser()._subparsers._group_actions[0].choices.values()
            for a in p._actions if a.help}
    for dest in ("jobs", "parallelism", "epochs", "npu_lanes"):
        assert f"at most {UPPER[dest]:g}" in text[dest], dest


def test_compile_refuses_rtl_over_the_size_limit_before_writing(tmp_path, capfd, tiny_po2, monkeypatch):
    monkeypatch.setattr(compile_cmd, "MAX_ADDERS", 1000)
    out = tmp_path / "b"
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(out), "--parallelism", "2"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and "--parallelism 2 would generate about" in err and "over the limit of 1,000" in err
    assert not out.exists()
