"""`hashiflex finetune`: a new NPU head trained on the chip's (golden) features of a real build,
written as an image, with test accuracy through the golden simulator. The smoke test uses tiny
data of three patterns; a shuffled-label control shows that the accuracy is learned, not given."""
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from hashiflex.cli import main
from hashiflex.finetune.datasets import digits_u8, load_dataset, resize_u8, select_classes
from hashiflex.finetune.head import HeadSettings, finetune_head, golden_features, golden_logits
from hashiflex.finetune.image import read_image
from hashiflex.ir import serialize


def _pattern(kind: int, rng) -> np.ndarray:
    x = rng.integers(0, 50, (28, 28)).astype(np.int64)
    o = int(rng.integers(0, 4))
    if kind == 0:
        x[:, o::4] += 180                       # vertical stripes
    elif kind == 1:
        x[o::4, :] += 180                       # horizontal stripes
    else:
        yy, xx = np.mgrid[:28, :28]
        x[(yy - 14 - o) ** 2 + (xx - 12 - o) ** 2 < 40] += 200   # a bright blob
    return np.clip(x, 0, 255).astype(np.uint8)


def _write_folder(root, classes, n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_pattern(c % 3, rng)).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """small-po2 (a trained width-0.25 network) compiled with an NPU of capacity 12."""
    d = tmp_path_factory.mktemp("build")
    assert main(["compile", "--checkpoint", "small-po2", "--out", str(d), "--npu-lanes", "4", "--npu-batch", "2",
                 "--npu-capacity", "12"]) == 0
    return d


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("patterns"), ["vert", "horiz", "blob"], 20, 10)


def test_finetune_learns_new_classes_exactly_through_the_golden_simulator(build, patterns, tmp_path, capfd):
    m = json.loads((build / "rtl" / "manifest.json").read_text())["npu"]
    assert (m["lanes"], m["batch"], m["capacity"], m["in_features"]) == (4, 2, 12, 128)
    out = tmp_path / "p.npuimg"
    assert main(["finetune", str(build), "--out", str(out), "--dataset", f"folder:{patterns}", "--epochs", "20",
                 "--json"]) == 0
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert r["out_features"] == 3 and r["classes"] == ["blob", "horiz", "vert"] and r["test_images"] == 30
    assert r["test_accuracy"] >= 0.9, r  # chance is 1/3
    img = read_image(out)
    assert img.n == 3 and img.k == 128 and img.meta["classes"] == r["classes"]
    # recompute the accuracy independently: golden logits of the whole program with the new head
    # equal the NPU's integer arithmetic on the golden features, and give the reported accuracy
    prog = serialize.load(build)
    ds = load_dataset(f"folder:{patterns}", (1, 28, 28))
    logits = golden_logits(prog, img, ds.xte)
    assert np.array_equal(logits, img.integer_logits(golden_features(prog, ds.xte)))
    assert float((logits.argmax(1) == ds.yte).mean()) == r["test_accuracy"]
    # the same command again gives the same bytes
    again = tmp_path / "q.npuimg"
    assert main(["finetune", str(build), "--out", str(again), "--dataset", f"folder:{patterns}", "--epochs", "20"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_shuffled_labels_do_not_reach_the_same_accuracy(build, patterns):
    """Control: the same training with shuffled training labels is near chance on the test set."""
    prog = serialize.load(build)
    ds = load_dataset(f"folder:{patterns}", (1, 28, 28))
    shuffled = replace(ds, ytr=np.random.default_rng(0).permutation(ds.ytr))
    _, good = finetune_head(prog, ds, HeadSettings(epochs=20))
    _, bad = finetune_head(prog, shuffled, HeadSettings(epochs=20))
    assert good["test_accuracy"] >= 0.9 and bad["test_accuracy"] < 0.7, (good, bad)


def test_class_subset_of_fashion_mnist(build, fmnist_dir, tmp_path, capfd):
    out = tmp_path / "f.npuimg"
    assert main(["finetune", str(build), "--out", str(out), "--classes", "1,4", "--limit", "60", "--test-limit", "20",
                 "--data", str(fmnist_dir), "--json"]) == 0
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert r["classes"] == ["Trouser", "Coat"] and r["out_features"] == 2 and r["test_images"] <= 20
    assert read_image(out).n == 2


def test_more_classes_than_capacity_and_bad_input_exit_2(build, tmp_path, capfd):
    many = _write_folder(tmp_path / "many", [f"c{i:02d}" for i in range(13)], 1, 1)
    nortl = tmp_path / "nortl"
    assert main(["compile", "--checkpoint", "small-po2", "--out", str(nortl), "--no-rtl"]) == 0
    capfd.readouterr()
    out = tmp_path / "x.npuimg"
    cases = [
        (["--dataset", f"folder:{many}"], "holds at most 12"),
        (["--classes", ",".join(str(i) for i in range(13))], "holds at most 12"),
        (["--classes", "0,11"], "out of range"),
        (["--classes", "3"], "at least 2"),
        (["--dataset", "imagenet"], "unknown --dataset"),
        (["--dataset", f"folder:{tmp_path / 'none'}"], "does not exist"),
        (["--epochs", "-1"], "--epochs"),
    ]
    for extra, message in cases:
        assert main(["finetune", str(build), "--out", str(out), *extra]) == 2, extra
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
    assert main(["finetune", str(nortl), "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compile" in err[0], err
    assert not out.exists()


def test_digits_are_upscaled_uint8():
    x, y = digits_u8()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.uint8 and x.max() == 255 and set(y) == set(range(10))
    big = resize_u8(x[:5], (1, 28, 28))
    assert big.shape == (5, 1, 28, 28) and big.dtype == np.uint8 and big.max() > 200
    ds = select_classes(load_dataset("digits", (1, 16, 16)), [3, 8])
    assert ds.classes == ["3", "8"] and set(ds.ytr) == {0, 1} and len(ds.xte) + len(ds.xtr) == 357
