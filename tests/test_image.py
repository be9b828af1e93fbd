"""sksvd.image against numpy's SVD, skimage's PSNR/SSIM and Pillow's JPEG."""

import io
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.datasets import load_sample_image

from sksvd.image import (
    CompressedImage,
    compress_image,
    image_to_matrix,
    matrix_to_image,
    psnr,
    rank_profile,
)


@pytest.fixture(scope="module")
def china():
    return load_sample_image("china.jpg")


@pytest.fixture(scope="module")
def small(china):
    """A 96 x 128 RGB crop: fast, but a real photo."""
    return np.ascontiguousarray(china[150:246, 200:328])


def _spectrum(img):
    M = np.asarray(img, dtype=np.float64).reshape(img.shape[0], -1)
    return np.linalg.svd(M, compute_uv=False)


def _numpy_rank_k(img, k):
    M = np.asarray(img, dtype=np.float64).reshape(img.shape[0], -1)
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return ((U[:, :k] * s[:k]) @ Vt[:k]).reshape(img.shape)


def test_image_to_matrix_shapes_and_copy(small):
    rgba = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
    gray = small[:, :, 0]
    assert image_to_matrix(small).shape == (96, 384)
    assert image_to_matrix(rgba).shape == (96, 512)
    assert image_to_matrix(gray).shape == (96, 128)
    M = image_to_matrix(small)
    assert M.dtype == np.float64 and M[3, 3 * 5 + 2] == small[3, 5, 2]
    M[:] = 0
    assert small.any()  # a copy: the caller's image is untouched


def test_matrix_to_image_round_trip_and_clip(small):
    back = matrix_to_image(image_to_matrix(small), small.shape, dtype=np.uint8)
    np.testing.assert_array_equal(back, small)
    u16 = matrix_to_image(np.array([[-5.0, 70000.0, 12.4]]), (1, 3), dtype=np.uint16)
    np.testing.assert_array_equal(u16, [[0, 65535, 12]])
    f = matrix_to_image(np.array([[-0.5, 1.5]]), (1, 2), value_range=(0.0, 1.0))
    np.testing.assert_array_equal(f, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="shape"):
        matrix_to_image(np.ones((2, 5)), (2, 2, 3))
    with pytest.raises(ValueError, match="M: contains NaN"):
        matrix_to_image(np.array([[np.nan, 1.0]]), (1, 2))
    with pytest.raises(TypeError, match="M: dtype"):
        matrix_to_image(np.array([["a", "b"]]), (1, 2))
    with pytest.raises(TypeError, match="shape="):
        matrix_to_image(np.ones((1, 2)), (1.0, 2))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_psnr_matches_skimage(small, dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        img = (small.astype(np.float64) * (np.iinfo(dtype).max / 255)).astype(dtype)
        noisy = np.clip(img + rng.normal(0, 0.02 * np.iinfo(dtype).max, img.shape),
                        0, np.iinfo(dtype).max).astype(dtype)
    else:
        img = (small / 255.0).astype(dtype)
        noisy = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1).astype(dtype)
    # (skimage accumulates float32 images in float32; sksvd in float64)
    assert psnr(img, noisy) == pytest.approx(peak_signal_noise_ratio(img, noisy), rel=1e-8)
    assert psnr(img, noisy, data_range=100.0) == pytest.approx(
        peak_signal_noise_ratio(img, noisy, data_range=100.0), rel=1e-8)
    assert psnr(img, img) == np.inf


def test_compress_image_rgb_uint8_against_numpy(small):
    k = 10
    ci = compress_image(small, n_components=k, algorithm="full", factor_dtype="float32")
    assert isinstance(ci, CompressedImage) and ci.n_components == k
    rec = ci.reconstruct()
    assert rec.dtype == np.uint8 and rec.shape == small.shape
    expected = np.clip(np.rint(_numpy_rank_k(small, k)), 0, 255).astype(np.uint8)
    assert np.mean(rec != expected) < 1e-3  # float32 factors: rare off-by-one roundings
    h, wc = 96, 384
    assert ci.nbytes == 4 * k * (h + wc)  # two float32 factors, counted exactly
    assert ci.compression_ratio == pytest.approx(small.nbytes / ci.nbytes)  # raw / compressed
    s = _spectrum(small)
    assert ci.energy == pytest.approx(np.sum(s[:k] ** 2) / np.sum(s**2), rel=1e-5)
    assert ci.expected_psnr == pytest.approx(
        peak_signal_noise_ratio(small.astype(np.float64), _numpy_rank_k(small, k),
                                data_range=255), rel=1e-4)
    half = compress_image(small, n_components=k, factor_dtype="float16")
    assert half.nbytes == ci.nbytes // 2
    assert psnr(small, half.reconstruct()) > psnr(small, rec) - 0.1


@pytest.mark.parametrize("kind", ["gray", "rgba", "uint16", "float"])
def test_compress_image_kinds(small, kind):
    if kind == "gray":
        img = small[:, :, 1].copy()
    elif kind == "rgba":
        img = np.dstack([small, np.linspace(0, 255, 128, dtype=np.uint8)[None, :].repeat(96, 0)])
    elif kind == "uint16":
        img = small.astype(np.uint16) * 257
    else:
        img = small.astype(np.float32) / 255
    before = img.copy()
    ci = compress_image(img, n_components=20)
    rec = ci.reconstruct()
    np.testing.assert_array_equal(img, before)
    assert rec.shape == img.shape and rec.dtype == img.dtype
    lo, hi = (0, 1) if kind == "float" else (0, np.iinfo(img.dtype).max)
    assert rec.min() >= lo and rec.max() <= hi
    ref = np.clip(_numpy_rank_k(img, 20), lo, hi)
    assert psnr(img, rec) == pytest.approx(peak_signal_noise_ratio(
        img.astype(np.float64), ref, data_range=hi - lo), abs=0.05)


def test_china_share_criteria(china):
    s = _spectrum(china)
    assert int(np.searchsorted(np.cumsum(s) / s.sum(), 0.8)) + 1 == 144
    assert compress_image(china, 0.8, criterion="singular_values").n_components == 144
    assert compress_image(china, 0.8).n_components == 1


@pytest.mark.parametrize("target", [25.0, 32.0])
def test_psnr_target_is_smallest_rank(small, target):
    ci = compress_image(small, psnr=target, factor_dtype="float32")
    k = ci.n_components
    s = _spectrum(small)
    n = small.size

    def exact_psnr(j):
        return 10 * np.log10(255.0**2 * n / np.sum(s[j:] ** 2))

    assert exact_psnr(k) >= target > exact_psnr(k - 1)
    assert ci.expected_psnr == pytest.approx(exact_psnr(k), abs=1e-3)
    # measured on the rounded uint8 reconstruction by skimage: the target, to rounding
    assert peak_signal_noise_ratio(small, ci.reconstruct()) >= target - 0.05


def test_rank_profile_against_references(small):
    ranks = [2, 8, 30]
    df = rank_profile(small, ranks, factor_dtype="float32")
    assert list(df.columns[:8]) == ["rank", "energy", "singular_value_share",
                                    "compression_ratio", "nbytes", "psnr", "ssim", "jpeg_psnr"]
    s = _spectrum(small)
    np.testing.assert_allclose(df["energy"], np.cumsum(s**2)[np.array(ranks) - 1]
                               / np.sum(s**2), rtol=1e-5)
    np.testing.assert_allclose(df["singular_value_share"],
                               np.cumsum(s)[np.array(ranks) - 1] / s.sum(), rtol=1e-5)
    for row in df.itertuples():
        rec = compress_image(small, n_components=row.rank, algorithm="full",
                             factor_dtype="float32").reconstruct()
        assert row.nbytes == 4 * row.rank * (96 + 384)
        assert row.compression_ratio == pytest.approx(small.nbytes / row.nbytes)
        assert row.psnr == pytest.approx(peak_signal_noise_ratio(small, rec), abs=0.02)
        assert row.ssim == pytest.approx(structural_similarity(
            small, rec, channel_axis=-1, data_range=255), abs=2e-3)
        # JPEG: the best quality within the byte budget, checked with Pillow directly
        assert row.jpeg_nbytes <= row.nbytes
        buf = io.BytesIO()
        Image.fromarray(small).save(buf, format="JPEG", quality=int(row.jpeg_quality),
                                    optimize=True)
        assert buf.tell() == row.jpeg_nbytes
        buf.seek(0)
        dec = np.asarray(Image.open(buf))
        assert row.jpeg_psnr == pytest.approx(peak_signal_noise_ratio(small, dec), rel=1e-9)
        if row.jpeg_quality < 100:
            buf = io.BytesIO()
            Image.fromarray(small).save(buf, format="JPEG", quality=int(row.jpeg_quality) + 1,
                                        optimize=True)
            assert buf.tell() > row.nbytes
    # an alpha channel cannot be stored as JPEG: no comparison rather than a wrong one
    rgba = np.dstack([small, np.full(small.shape[:2], 200, np.uint8)])
    assert rank_profile(rgba, [4], ssim=False)["jpeg_psnr"].isna().all()


def test_rank_profile_needs_skimage(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    with pytest.raises(ImportError, match=r"sksvd\[image\]"):
        rank_profile(small, [2])
    assert rank_profile(small, [2], ssim=False, jpeg=False)["ssim"].isna().all()


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[0.0, np.nan], [1.0, 1.0]]), ValueError, "NaN"),
    (np.array([[0.0, np.inf], [1.0, 1.0]]), ValueError, "inf"),
    (np.ones(4), ValueError, r"shape=\(4,\)"),
    (np.ones((2, 2, 2, 2)), ValueError, r"shape=\(2, 2, 2, 2\)"),
    (np.ones((0, 3)), ValueError, "empty"),
    (np.array([["a", "b"]]), TypeError, "dtype=<U1"),
    ("img.png", TypeError, "img='img.png'"),
])
def test_bad_images(bad, exc, match):
    with pytest.raises(exc, match=match):
        compress_image(bad, n_components=1)
    with pytest.raises(exc, match=match):
        image_to_matrix(bad)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_components=0), ValueError, "n_components=0"),
    (dict(n_components=-2), ValueError, "n_components=-2"),
    (dict(n_components=97), ValueError, "n_components=97"),
    (dict(n_components=1.0), ValueError, "n_components=1.0"),
    (dict(n_components=-0.1), ValueError, "n_components=-0.1"),
    (dict(n_components="10"), TypeError, "n_components='10'"),
    (dict(), ValueError, "exactly one"),
    (dict(n_components=3, psnr=30.0), ValueError, "exactly one"),
    (dict(psnr=-1.0), ValueError, "psnr=-1.0"),
    (dict(psnr="high"), TypeError, "psnr='high'"),
    (dict(n_components=3, factor_dtype="int8"), ValueError, "factor_dtype='int8'"),
    (dict(n_components=0.5, criterion="variance"), ValueError, "criterion='variance'"),
])
def test_bad_arguments(small, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compress_image(small, **kwargs)


def test_bad_psnr_and_profile_arguments(small):
    with pytest.raises(ValueError, match="shape"):
        psnr(small, small[:10])
    with pytest.raises(ValueError, match="data_range"):
        psnr(small.astype(np.float64), small.astype(np.float64))  # 0..255 floats
    with pytest.raises(ValueError, match="data_range=-1"):
        psnr(small, small, data_range=-1)
    with pytest.raises(ValueError, match="ranks=0"):
        rank_profile(small, [0])
    with pytest.raises(ValueError, match="ranks=97"):
        rank_profile(small, [97])
    with pytest.raises(TypeError, match="ranks=5"):
        rank_profile(small, 5)
    with pytest.raises(ValueError, match="psnr=30.0"):
        compress_image(small.astype(np.float64), psnr=30.0)  # range not inferable


def _unrounded_psnr(img, ci):
    """PSNR of the stored factors' product against the image, before rounding (numpy)."""
    Z, Vt = ci.factors()
    M = np.asarray(img, dtype=np.float64).reshape(img.shape[0], -1)
    mse = np.mean((M - Z.astype(np.float64) @ Vt.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_uint8_factors_within_half_a_db_of_float32_at_a_quarter_of_the_bytes(name):
    img = load_sample_image(name)[::2, ::2]  # 214 x 320 x 3: the same comparison, faster
    for k in (25, 50, 100):
        f32 = compress_image(img, k, algorithm="full", factor_dtype="float32")
        u8 = compress_image(img, k, algorithm="full", factor_dtype="uint8")
        assert u8.nbytes * 3.5 <= f32.nbytes
        assert u8.nbytes == k * (img.shape[0] + img.shape[1] * 3) + 16 * k
        assert psnr(img, u8.reconstruct()) >= psnr(img, f32.reconstruct()) - 0.5
        assert u8.expected_psnr == pytest.approx(_unrounded_psnr(img, u8), abs=1e-6)
        assert u8.compression_ratio == pytest.approx(img.nbytes / u8.nbytes)


@pytest.mark.parametrize("target", [25.0, 32.0])
def test_psnr_target_with_uint8_factors_is_smallest_rank(small, target):
    ci = compress_image(small, psnr=target)  # uint8 factors by default
    k = ci.n_components
    assert ci.factor_dtype == "uint8"
    assert _unrounded_psnr(small, ci) >= target
    below = compress_image(small, k - 1, algorithm="full")
    assert _unrounded_psnr(small, below) < target
    # the quantization costs rank: never fewer components than float32 factors need
    assert k >= compress_image(small, psnr=target, factor_dtype="float32").n_components


def test_psnr_target_above_what_uint8_factors_reach(small):
    full = compress_image(small, min(small.shape[0], small.shape[1] * 3), algorithm="full")
    ceiling = full.expected_psnr
    with pytest.raises(ValueError, match=r"psnr=80.0.*uint8"):
        compress_image(small, psnr=80.0)
    assert ceiling < 80.0
    assert compress_image(small, psnr=80.0, factor_dtype="float32").n_components <= 96


@pytest.mark.parametrize("factor_dtype", ["uint8", "float16", "float32"])
def test_save_and_load_bit_for_bit(small, tmp_path, factor_dtype):
    ci = compress_image(small, 12, factor_dtype=factor_dtype)
    path = tmp_path / "small.sksvd"  # written where asked: no suffix added
    size = ci.save(path)
    assert size == path.stat().st_size
    assert 0 < size - ci.nbytes < 3000  # the container's fixed overhead
    back = CompressedImage.load(path)
    np.testing.assert_array_equal(back.reconstruct(), ci.reconstruct())
    assert back.factor_dtype == factor_dtype and back.nbytes == ci.nbytes
    assert (back.shape, back.dtype, back.n_components) == (small.shape, small.dtype, 12)
    assert back.expected_psnr == ci.expected_psnr
    # the overhead does not grow with the rank
    big = compress_image(small, 60, factor_dtype=factor_dtype)
    assert big.save(tmp_path / "big.npz") - big.nbytes == size - ci.nbytes


def test_load_refuses_tampered_and_truncated_files(small, tmp_path):
    import zipfile

    path = tmp_path / "ci.npz"
    size = compress_image(small, 8).save(path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: size // 2])
    with pytest.raises(ValueError, match="cut.npz.*truncated"):
        CompressedImage.load(cut)
    # one code changed inside the stored scores
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    arrays["scores"][0, 0] ^= 1
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="bad.npz.*modified"):
        CompressedImage.load(bad)
    # an object array (pickle) is never loaded
    evil = tmp_path / "evil.npz"
    with zipfile.ZipFile(evil, "w") as zf:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        zf.writestr("scores.npy", buf.getvalue())
    with pytest.raises(ValueError, match="evil.npz"):
        CompressedImage.load(evil)
    # the metadata are covered too: a changed shape is refused
    import json

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["value_range"] = [0.0, 1.0]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(bad, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="bad.npz.*modified"):
        CompressedImage.load(bad)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="plain.npy.*not an .npz"):
        CompressedImage.load(npy)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz.*meta"):
        CompressedImage.load(other)


def test_unknown_factor_dtype(small):
    for bad in ("int8", "uint4", None):
        with pytest.raises(ValueError, match=f"factor_dtype={bad!r}"):
            compress_image(small, 3, factor_dtype=bad)
        with pytest.raises(ValueError, match=f"factor_dtype={bad!r}"):
            rank_profile(small, [3], factor_dtype=bad)


def test_rank_profile_uint8_columns(small):
    df = rank_profile(small, [4, 20], ssim=False)
    for row in df.itertuples():
        ci = compress_image(small, row.rank, algorithm="full")
        assert row.nbytes == ci.nbytes == row.uint8_nbytes
        assert row.float32_nbytes == 4 * row.rank * (96 + 384)
        assert row.raw_nbytes == small.nbytes
        assert row.psnr == pytest.approx(psnr(small, ci.reconstruct()), abs=0.02)
        assert row.jpeg_nbytes <= row.nbytes
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=100, optimize=True)
    assert int(df["jpeg_max_nbytes"].iloc[0]) == buf.tell()
    assert (df["jpeg_max_psnr"] >= df["jpeg_psnr"]).all()


def _psnr_ranks(device):
    img = load_sample_image("china.jpg")
    return [compress_image(img, psnr=t, factor_dtype=f, device=device).n_components
            for t in (25.0, 30.0) for f in ("float32", "uint8")]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_psnr_ranks_same_on_cpu_and_gpu():
    assert _psnr_ranks("cpu") == _psnr_ranks("cuda")


def test_cli_compress_save_and_decompress(small, tmp_path, capsys):
    import json

    from sksvd.cli import main

    png = tmp_path / "small.png"
    Image.fromarray(small).save(png)
    saved, out, back = tmp_path / "small.npz", tmp_path / "out.png", tmp_path / "back.png"
    assert main(["compress", str(png), "--rank", "12", "--save", str(saved), "-o", str(out),
                 "--no-jpeg", "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    h, wc = small.shape[0], small.shape[1] * 3
    assert res["factor_bytes"] == 12 * (h + wc) + 16 * 12  # uint8 codes, scales and offsets
    assert res["compression_ratio"] == pytest.approx(small.nbytes / res["factor_bytes"])
    assert res["file_bytes"] == saved.stat().st_size
    assert main(["decompress", str(saved), "-o", str(back), "--original", str(png),
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"{saved.stat().st_size:,} bytes" in text and "raw / compressed" in text
    np.testing.assert_array_equal(np.asarray(Image.open(back)), np.asarray(Image.open(out)))
    assert float(text.split("PSNR against --original")[1].split()[0]) == pytest.approx(
        res["psnr_db"], abs=0.005)
    saved.write_bytes(saved.read_bytes()[:500])
    assert main(["decompress", str(saved), "-o", str(back)]) == 2
    assert "small.npz" in capsys.readouterr().err
