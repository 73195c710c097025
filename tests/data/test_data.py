"""Data loaders: idx .gz files, image folders, and where the Fashion-MNIST folder is looked up."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from conftest import png_claiming, synthetic_split, write_fashion_mnist, write_idx
from hashiflex.data import fashion_mnist, find_data_dir, load_fashion_mnist, load_image_folder
from hashiflex.errors import UserError


def test_idx_loader_returns_the_written_images_and_labels(tmp_path):
    d = write_fashion_mnist(tmp_path, n_train=30, n_test=12)
    x, y = load_fashion_mnist("train", str(d))
    ex, ey = synthetic_split(30, 0)
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], ex)
    np.testing.assert_array_equal(y, ey)
    xt, yt = load_fashion_mnist("test", str(d), limit=5)
    np.testing.assert_array_equal(xt[:, 0], synthetic_split(12, 1)[0][:5])
    assert len(yt) == 5


def test_truncated_idx_file_is_a_user_error(tmp_path):
    d = write_fashion_mnist(tmp_path, n_train=10, n_test=4)
    path = d / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(UserError, match="truncated"):
        load_fashion_mnist("train", str(d))


def test_idx_file_with_wrong_header_or_not_gzip_is_a_user_error(tmp_path):
    d = write_fashion_mnist(tmp_path, n_train=10, n_test=4)
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28), dtype=np.uint8))  # 2 dims, 3 expected
    with pytest.raises(UserError, match="idx file with 3 dims"):
        load_fashion_mnist("test", str(d))
    (d / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="cannot read"):
        load_fashion_mnist("train", str(d))


def test_image_and_label_counts_must_agree(tmp_path):
    d = write_fashion_mnist(tmp_path, n_train=10, n_test=4)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8))
    with pytest.raises(UserError, match="10 images but 9 labels"):
        load_fashion_mnist("train", str(d))


def _png(path, size, mode, value):
    color = value if mode == "L" else (value, value // 2, 0)
    Image.new(mode, size, color).save(path)


def test_image_folder_resizes_any_size_and_labels_by_sorted_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "ant").mkdir()
    _png(tmp_path / "cat" / "a.png", (40, 30), "RGB", 200)
    _png(tmp_path / "cat" / "b.png", (7, 9), "L", 255)
    _png(tmp_path / "ant" / "c.png", (100, 100), "L", 0)
    (tmp_path / "ant" / "notes.txt").write_text("not an image, skipped")
    x, y, names = load_image_folder(str(tmp_path), size=28)
    assert names == ["ant", "cat"]
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 1]
    assert (x[0] == 0).all() and (x[2] == 255).all()  # uniform images stay uniform when resized
    gray = int(round(0.299 * 200 + 0.587 * 100))  # PIL's RGB -> L conversion
    assert abs(int(x[1].mean()) - gray) <= 1
    x3, _, _ = load_image_folder(str(tmp_path), size=16, channels=3)
    assert x3.shape == (3, 3, 16, 16)
    assert tuple(x3[1, :, 5, 5]) == (200, 100, 0)


def test_image_folder_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_image_folder(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no class sub-folders"):
        load_image_folder(str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(UserError, match="cannot read image"):
        load_image_folder(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        load_image_folder(str(tmp_path), classes=["zebra"])


def test_data_dir_lookup_order(tmp_path, monkeypatch):
    env_dir = write_fashion_mnist(tmp_path / "env", n_train=4, n_test=4)
    arg_dir = write_fashion_mnist(tmp_path / "arg", n_train=4, n_test=4)
    deb_dir = write_fashion_mnist(tmp_path / "deb", n_train=4, n_test=4)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", deb_dir)
    monkeypatch.delenv("HASHIFLEX_DATA", raising=False)
    assert find_data_dir() == deb_dir
    monkeypatch.setenv("HASHIFLEX_DATA", str(env_dir))
    assert find_data_dir() == env_dir
    assert find_data_dir(str(arg_dir)) == arg_dir
    x, _ = load_fashion_mnist("train")  # the env folder, no argument
    assert len(x) == 4


def test_missing_data_errors_name_the_source_and_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHIFLEX_DATA", str(tmp_path / "empty"))
    with pytest.raises(UserError) as e:
        find_data_dir()
    msg = str(e.value)
    assert "HASHIFLEX_DATA" in msg and "--data" in msg and "dataset-fashion-mnist" in msg and "\n" not in msg
    with pytest.raises(UserError, match=r"\(from --data\)"):
        find_data_dir(str(tmp_path))


def test_image_folder_limits_scaling_and_empty_classes(tmp_path):
    """16-bit images are scaled by their full range (65535 -> 255), not clipped; a header that
    claims more than MAX_PIXELS is refused before decoding; an empty class folder is refused."""
    from hashiflex.data.folder import MAX_PIXELS

    for c in ("a", "b"):
        (tmp_path / "ok" / c).mkdir(parents=True)
    ramp = (np.arange(28 * 28).reshape(28, 28) * 83).astype(np.uint16)   # 0 .. 65,000
    Image.fromarray(ramp).save(tmp_path / "ok" / "a" / "x.png")
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "ok" / "b" / "y.png")
    x, y, _ = load_image_folder(str(tmp_path / "ok"))
    np.testing.assert_array_equal(x[0, 0], np.floor(ramp * (255 / 65535) + 0.5).astype(np.uint8))
    assert x[0].max() == 253 and x[1].max() == 200
    (tmp_path / "ok" / "c").mkdir()
    with pytest.raises(UserError, match="has no images"):
        load_image_folder(str(tmp_path / "ok"))
    (tmp_path / "bomb" / "a").mkdir(parents=True)
    png_claiming(tmp_path / "bomb" / "a" / "z.png", 1 << 15, 1 << 15)
    with pytest.raises(UserError, match="claims 32768x32768") as e:
        load_image_folder(str(tmp_path / "bomb"))
    assert f"{MAX_PIXELS:,}" in str(e.value)
