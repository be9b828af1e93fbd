"""Image compression by truncated SVD, and an honest comparison with JPEG.

An image of shape ``(h, w, c)`` is treated as the ``(h, w*c)`` matrix of its
rows (a grayscale ``(h, w)`` image stays ``(h, w)``); the rank-``k`` truncated
SVD of that matrix, ``M ~= U_k diag(s_k) V_k^T``, is the compressed image.
Since the pixel error is the matrix error, the mean squared error of the
rank-``k`` reconstruction is known exactly from the spectrum:

    MSE_k = sum_{i>k} s_i^2 / (h * w * c),   PSNR_k = 10 log10(R^2 / MSE_k)

with ``R`` the data range (255 for uint8). On ``sklearn.datasets``'
``china.jpg`` (427 x 640 x 3, i.e. a 427 x 1920 matrix) 80% of the sum of
singular values needs rank 144, but 80% of the energy ``sum s_i^2`` is
reached at rank 1: the energy share is a poor guide to visual quality, PSNR
is a better one, and :func:`rank_profile` puts JPEG at the same number of
bytes next to it.

Pillow and scikit-image (the ``image`` extra) are imported only where used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from ._validation import check_float, check_int, check_n_components

__all__ = [
    "CompressedImage",
    "image_to_matrix",
    "matrix_to_image",
    "compress_image",
    "psnr",
    "rank_profile",
]

_FACTOR_DTYPES = ("float32", "float16")


def _check_image(img, name="img"):
    """Validate an image array: 2-D or 3-D, numeric (int or float), finite, non-empty."""
    if isinstance(img, (str, bytes)):
        raise TypeError(f"{name}={img!r}: expected an image array (h, w) or (h, w, c)")
    arr = np.asarray(img)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name}: dtype={arr.dtype}: expected an integer or float image")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: shape={arr.shape}: expected (h, w) or (h, w, c)")
    if arr.size == 0:
        raise ValueError(f"{name}: shape={arr.shape}: the image is empty")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _dtype_range(dtype):
    """(min, max) of the values a dtype is expected to hold (skimage's convention)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return -1.0, 1.0


def _default_data_range(img, name="img"):
    """The PSNR data range of ``img`` as skimage's ``peak_signal_noise_ratio`` infers it."""
    lo, hi = _dtype_range(img.dtype)
    vmin, vmax = float(np.min(img)), float(np.max(img))
    if vmax > hi or vmin < lo:
        raise ValueError(
            f"{name}: values in [{vmin:g}, {vmax:g}] lie outside the range expected for "
            f"dtype={img.dtype} ([{lo:g}, {hi:g}]): pass data_range"
        )
    return hi if vmin >= 0 else hi - lo


def _value_range(img):
    """The range a reconstruction of ``img`` is clipped to.

    Integer images: the dtype's range. Float images: ``[0, 1]`` (``[-1, 1]``
    when negative values occur), widened to the values present, so that real
    data are never clipped.
    """
    if np.issubdtype(img.dtype, np.integer):
        return _dtype_range(img.dtype)
    vmin, vmax = float(np.min(img)), float(np.max(img))
    lo = -1.0 if vmin < 0 else 0.0
    return min(lo, vmin), max(1.0, vmax)


def image_to_matrix(img, dtype=np.float64):
    """The matrix an image is compressed as: ``(h, w, c) -> (h, w*c)``, ``(h, w)`` unchanged.

    Values keep their scale (0..255 for uint8); the caller's array is not
    modified. Row ``i`` of the matrix is pixel row ``i`` with the channels
    interleaved; any fixed order of the columns has the same singular values.

    Parameters
    ----------
    img : array-like of shape (h, w) or (h, w, c)
        uint8, uint16, other integer or float image.
    dtype : numpy float dtype, default=np.float64

    Returns
    -------
    M : ndarray of shape (h, w*c) or (h, w)

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.image import image_to_matrix
    >>> image_to_matrix(np.zeros((4, 5, 3), dtype=np.uint8)).shape
    (4, 15)
    """
    arr = _check_image(img)
    return arr.reshape(arr.shape[0], -1).astype(dtype, copy=True)


def matrix_to_image(M, shape, dtype=np.float64, value_range=None):
    """Back from a matrix to an image of ``shape``, clipped to a range and cast to ``dtype``.

    Parameters
    ----------
    M : array-like of shape (h, w*c)
    shape : tuple ``(h, w)`` or ``(h, w, c)``
    dtype : numpy dtype, default=np.float64
        Integer dtypes are rounded to the nearest integer.
    value_range : (float, float), default=None
        Values are clipped to it; ``None`` is the dtype's range for integer
        dtypes and no clipping for float dtypes.

    Returns
    -------
    img : ndarray of ``shape`` and ``dtype``

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.image import matrix_to_image
    >>> matrix_to_image(np.array([[-3.0, 254.6, 300.0]]), (1, 1, 3), dtype=np.uint8)
    array([[[  0, 255, 255]]], dtype=uint8)
    """
    if isinstance(M, (str, bytes)):
        raise TypeError(f"M={M!r}: expected a 2-D numeric array")
    M = np.asarray(M)
    if not (np.issubdtype(M.dtype, np.integer) or np.issubdtype(M.dtype, np.floating)):
        raise TypeError(f"M: dtype={M.dtype}: expected a numeric matrix")
    if np.issubdtype(M.dtype, np.floating) and not np.all(np.isfinite(M)):
        raise ValueError("M: contains NaN or inf")
    if isinstance(shape, (str, bytes)) or not all(isinstance(s, Integral) for s in shape):
        raise TypeError(f"shape={shape!r}: expected a tuple of ints")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape={shape}: expected (h, w) or (h, w, c)")
    expected = (shape[0], int(np.prod(shape[1:])))
    if M.ndim != 2 or M.shape != expected:
        raise ValueError(f"M: shape={M.shape}: expected {expected} for shape={shape}")
    dtype = np.dtype(dtype)
    if value_range is None and np.issubdtype(dtype, np.integer):
        value_range = _dtype_range(dtype)
    out = M.astype(np.float64)
    if value_range is not None:
        out = np.clip(out, value_range[0], value_range[1])
    if np.issubdtype(dtype, np.integer):
        out = np.rint(out)
    return out.reshape(shape).astype(dtype)


@dataclass
class CompressedImage:
    """A rank-``k`` SVD of an image's matrix, and what is needed to rebuild the image.

    The image is stored as two factors, ``scores = U_k diag(s_k)`` of shape
    ``(h, k)`` and ``components = V_k^T`` of shape ``(k, w*c)``, both in
    ``factor_dtype`` (float32 by default, 4 bytes per number; float16 on
    request). ``nbytes`` counts exactly those two arrays,
    ``k (h + w*c) * itemsize`` bytes; the shape, dtype and value range (a few
    bytes of metadata) and the kept singular values (informative only, not
    needed to rebuild) are not counted.

    Attributes
    ----------
    scores : ndarray of shape (h, k)
    components : ndarray of shape (k, w*c)
    singular_values : ndarray of shape (k,)
    shape : tuple
        Shape of the original image.
    dtype : numpy dtype
        Dtype of the original image; :meth:`reconstruct` returns it.
    value_range : (float, float)
        Range the reconstruction is clipped to (see :func:`compress_image`).
    data_range : float or None
        PSNR data range of the original (``None`` when it could not be inferred).
    original_nbytes : int
        ``nbytes`` of the original image array.
    energy : float
        ``sum_{i<=k} s_i^2 / ||M||_F^2``.
    singular_value_share : float or None
        ``sum_{i<=k} s_i / sum_i s_i`` when the full spectrum was computed.
    expected_psnr : float or None
        PSNR of the unrounded, unclipped reconstruction, exact from the
        spectrum (``None`` without a data range). Clipping can only raise the
        PSNR; rounding to an integer dtype adds at most ``1/4`` (typically
        ``1/12``) to the MSE.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.image import compress_image
    >>> img = np.tile(np.arange(8, dtype=np.uint8), (6, 1))
    >>> ci = compress_image(img, n_components=1)
    >>> ci.nbytes, ci.n_components
    (56, 1)
    >>> bool(np.array_equal(ci.reconstruct(), img))
    True
    """

    scores: np.ndarray
    components: np.ndarray
    singular_values: np.ndarray
    shape: tuple
    dtype: np.dtype
    value_range: tuple
    data_range: float | None
    original_nbytes: int
    energy: float
    singular_value_share: float | None = None
    expected_psnr: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_components(self):
        """The rank ``k`` kept."""
        return int(self.components.shape[0])

    @property
    def nbytes(self):
        """Bytes of the stored factors: ``scores.nbytes + components.nbytes``."""
        return int(self.scores.nbytes + self.components.nbytes)

    @property
    def compression_ratio(self):
        """``nbytes / original_nbytes``: below 1 the factors are smaller than the raw image."""
        return self.nbytes / self.original_nbytes

    def reconstruct(self):
        """The rank-``k`` image, clipped to ``value_range`` and cast to the original dtype.

        Returns
        -------
        img : ndarray of the original shape and dtype

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.image import compress_image
        >>> img = np.eye(4)
        >>> compress_image(img, n_components=4).reconstruct().round(6)[0]
        array([1., 0., 0., 0.])
        """
        M = self.scores.astype(np.float32) @ self.components.astype(np.float32)
        return matrix_to_image(M, self.shape, dtype=self.dtype, value_range=self.value_range)


def psnr(original, reconstructed, data_range=None):
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB.

    Computed as :func:`skimage.metrics.peak_signal_noise_ratio` does (same
    default ``R``: 255 for uint8, 65535 for uint16, 1 for float images in
    [0, 1], 2 when negative values occur), without needing scikit-image.

    Parameters
    ----------
    original, reconstructed : array-like of the same shape
    data_range : float, default=None
        ``R``; inferred from ``original``'s dtype when ``None``.

    Returns
    -------
    float
        ``inf`` for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.image import psnr
    >>> a = np.zeros((4, 4), dtype=np.uint8)
    >>> round(psnr(a, a + 1), 2)
    48.13
    """
    a = _check_image(original, "original")
    b = _check_image(reconstructed, "reconstructed")
    if a.shape != b.shape:
        raise ValueError(f"reconstructed: shape={b.shape}: expected {a.shape} (original's)")
    if data_range is None:
        data_range = _default_data_range(a, "original")
    else:
        data_range = check_float(data_range, "data_range", low=0)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / mse))


def _rank_for_psnr(S, total, n_values, data_range, target):
    """Smallest ``k`` with ``10 log10(R^2 n / sum_{i>k} s_i^2) >= target`` (exact spectrum)."""
    energy = np.asarray(S, dtype=np.float64) ** 2
    # tail[k] = sum_{i>k} s_i^2 for k = 0..len(S); computed from the exact total.
    tail = np.maximum(total - np.concatenate([[0.0], np.cumsum(energy)]), 0.0)
    allowed = n_values * data_range**2 * 10 ** (-target / 10)
    ok = np.nonzero(tail[1:] <= allowed)[0]
    return int(ok[0]) + 1 if ok.size else len(S)


def _expected_psnr(total, kept, n_values, data_range):
    if data_range is None:
        return None
    tail = max(total - kept, 0.0)
    return float("inf") if tail == 0 else float(10 * np.log10(n_values * data_range**2 / tail))


def _safe_data_range(arr):
    try:
        return _default_data_range(arr)
    except ValueError:
        return None


def _full_svd(M, device, dtype):
    from .compression import TruncatedSVDCompressor

    comp = TruncatedSVDCompressor(min(M.shape), algorithm="full", device=device, dtype=dtype)
    Z = comp.fit_transform(M)
    return comp, Z


def compress_image(img, n_components=None, *, psnr=None, criterion="energy", algorithm="auto",
                   factor_dtype="float32", device="auto", random_state=None):
    """Compress an image by truncated SVD of its ``(h, w*c)`` matrix.

    The rank is chosen by exactly one of:

    - ``n_components`` int: that rank;
    - ``n_components`` float in (0, 1): the smallest rank whose singular
      values hold that share, of ``sum s_i^2`` (``criterion="energy"``) or of
      ``sum s_i`` (``criterion="singular_values"``), see
      :class:`sksvd.compression.TruncatedSVDCompressor`;
    - ``psnr`` (dB): the smallest rank ``k`` whose tail energy gives at least
      that PSNR, ``10 log10(R^2 h w c / sum_{i>k} s_i^2) >= psnr``, exact from
      the full spectrum (computed with the exact SVD); this is the PSNR of
      the unrounded reconstruction.

    Parameters
    ----------
    img : array-like of shape (h, w) or (h, w, c)
        uint8, uint16 (any integer) or float image; gray, RGB, RGBA, any ``c``.
    n_components : int or float, default=None
    psnr : float, default=None
        Target PSNR in dB (needs a data range inferable from the dtype).
    criterion : {"energy", "singular_values"}, default="energy"
    algorithm : {"auto", "full", "randomized"}, default="auto"
        Solver for an int or float ``n_components``.
    factor_dtype : {"float32", "float16"}, default="float32"
        Storage type of the two factors (counted in ``nbytes``).
    device : str, default="auto"
    random_state : int or None, default=None

    Returns
    -------
    CompressedImage

    Examples
    --------
    >>> from sklearn.datasets import load_sample_image
    >>> from sksvd.image import compress_image
    >>> img = load_sample_image("china.jpg")
    >>> compress_image(img, 0.8, criterion="singular_values").n_components
    144
    >>> compress_image(img, 0.8).n_components
    1
    >>> ci = compress_image(img[::4, ::4], psnr=30.0)  # a 107 x 160 thumbnail
    >>> ci.n_components, round(ci.expected_psnr, 2)
    (60, 30.14)
    """
    arr = _check_image(img)
    if (n_components is None) == (psnr is None):
        raise ValueError(
            f"n_components={n_components!r}, psnr={psnr!r}: give exactly one of them"
        )
    if factor_dtype not in _FACTOR_DTYPES:
        raise ValueError(f"factor_dtype={factor_dtype!r}: expected 'float32' or 'float16'")
    if criterion not in ("energy", "singular_values"):
        raise ValueError(f"criterion={criterion!r}: expected 'energy' or 'singular_values'")
    M = image_to_matrix(arr, dtype=np.float32)
    n_values = M.size
    data_range = _safe_data_range(arr)
    total = float(np.sum(M.astype(np.float64) ** 2))
    sv_share = None
    if psnr is not None:
        if isinstance(psnr, bool) or not isinstance(psnr, Real):
            raise TypeError(f"psnr={psnr!r}: expected a float (dB)")
        psnr = check_float(psnr, "psnr", low=0)
        if data_range is None:
            raise ValueError(
                f"psnr={psnr}: the image's data range cannot be inferred from dtype="
                f"{arr.dtype} and its values; rescale a float image to [0, 1]"
            )
        comp, Z = _full_svd(M, device, "float32")
        S = comp.singular_values_
        k = _rank_for_psnr(S, total, n_values, data_range, psnr)
        sv_share = float(np.sum(S[:k], dtype=np.float64) / max(np.sum(S, dtype=np.float64),
                                                               1e-300))
        Z, Vt, S = Z[:, :k], comp.components_[:k], S[:k]
    else:
        from .compression import TruncatedSVDCompressor

        n_components = check_n_components(n_components, n_samples=M.shape[0],
                                          n_features=M.shape[1])
        comp = TruncatedSVDCompressor(n_components, criterion=criterion, algorithm=algorithm,
                                      device=device, random_state=random_state)
        Z = comp.fit_transform(M)
        Vt, S = comp.components_, comp.singular_values_
    kept = float(np.sum(np.asarray(S, dtype=np.float64) ** 2))
    return CompressedImage(
        scores=np.ascontiguousarray(Z, dtype=factor_dtype),
        components=np.ascontiguousarray(Vt, dtype=factor_dtype),
        singular_values=np.asarray(S, dtype=np.float32),
        shape=arr.shape,
        dtype=arr.dtype,
        value_range=_value_range(arr),
        data_range=data_range,
        original_nbytes=int(arr.nbytes),
        energy=kept / total if total > 0 else 1.0,
        singular_value_share=sv_share,
        expected_psnr=_expected_psnr(total, kept, n_values, data_range),
    )


def _jpeg_image_and_range(arr):
    """8-bit image Pillow can encode as JPEG, and the factor back to ``arr``'s scale.

    Returns ``(uint8 array, offset, scale)``, or ``None`` when JPEG cannot hold the
    image (alpha channel, or a channel count other than 1 or 3).
    """
    if arr.ndim == 3 and arr.shape[2] not in (1, 3):
        return None
    lo, hi = _value_range(arr)
    if np.issubdtype(arr.dtype, np.integer):
        lo = 0.0 if arr.min() >= 0 else lo
    scale = (hi - lo) / 255.0
    u8 = np.clip(np.rint((arr.astype(np.float64) - lo) / scale), 0, 255).astype(np.uint8)
    if u8.ndim == 3 and u8.shape[2] == 1:
        u8 = u8[:, :, 0]
    return u8, lo, scale


def _jpeg_at_bytes(arr, budget, data_range, cache):
    """PSNR of the best-quality JPEG no larger than ``budget`` bytes (quality 1..100).

    Returns ``(psnr, quality, jpeg_nbytes)``; NaNs when even quality 1 is larger
    or JPEG cannot hold the image. ``cache`` maps quality -> (size, psnr).
    """
    from PIL import Image

    prep = _jpeg_image_and_range(arr)
    if prep is None or data_range is None:
        return float("nan"), None, None
    u8, lo, scale = prep
    pil = Image.fromarray(u8)

    def encode(q):
        if q not in cache:
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=q, optimize=True)
            size = buf.tell()
            buf.seek(0)
            dec = np.asarray(Image.open(buf), dtype=np.float64) * scale + lo
            cache[q] = (size, psnr(arr, dec.reshape(arr.shape), data_range=data_range))
        return cache[q]

    lo_q, hi_q, best = 1, 100, None
    if encode(1)[0] > budget:
        return float("nan"), None, None
    while lo_q <= hi_q:  # JPEG size grows with quality: largest quality within budget
        mid = (lo_q + hi_q) // 2
        if encode(mid)[0] <= budget:
            best, lo_q = mid, mid + 1
        else:
            hi_q = mid - 1
    size, value = encode(best)
    return value, best, size


def rank_profile(img, ranks, *, ssim=True, jpeg=True, factor_dtype="float32", device="auto"):
    """Quality and size of the rank-``k`` SVD compression of an image, for several ranks.

    One exact SVD of the image's matrix gives every rank. For each rank:

    - ``energy``: ``sum_{i<=k} s_i^2 / ||M||_F^2``;
    - ``singular_value_share``: ``sum_{i<=k} s_i / sum_i s_i``;
    - ``compression_ratio``, ``nbytes``: as :class:`CompressedImage` (factors
      in ``factor_dtype``);
    - ``psnr``, ``ssim``: of the reconstruction (rounded and clipped to the
      image's dtype) against the original; SSIM from
      :func:`skimage.metrics.structural_similarity`;
    - ``jpeg_psnr``, ``jpeg_quality``, ``jpeg_nbytes``: the best JPEG (Pillow,
      ``optimize=True``, quality 1..100) no larger than ``nbytes``; NaN when
      quality 1 is already larger, or the image has an alpha channel (JPEG
      cannot hold it). uint16 and float images are encoded at 8 bits and the
      decoded image is compared at the original scale.

    Parameters
    ----------
    img : array-like of shape (h, w) or (h, w, c)
    ranks : iterable of int
        Each in ``[1, min(h, w*c)]``.
    ssim : bool, default=True
        Needs scikit-image (the ``image`` extra).
    jpeg : bool, default=True
        Needs Pillow (the ``image`` extra).
    factor_dtype : {"float32", "float16"}, default="float32"
    device : str, default="auto"

    Returns
    -------
    pandas.DataFrame
        Columns rank, energy, singular_value_share, compression_ratio, nbytes,
        psnr, ssim, jpeg_psnr, jpeg_quality, jpeg_nbytes (one row per rank).

    Examples
    --------
    >>> from sklearn.datasets import load_sample_image
    >>> from sksvd.image import rank_profile
    >>> img = load_sample_image("china.jpg")[::4, ::4]  # a 107 x 160 thumbnail
    >>> df = rank_profile(img, [10, 50], ssim=False, jpeg=False)
    >>> df[["rank", "nbytes"]].to_numpy().tolist()
    [[10, 23480], [50, 117400]]
    """
    import pandas as pd

    arr = _check_image(img)
    if factor_dtype not in _FACTOR_DTYPES:
        raise ValueError(f"factor_dtype={factor_dtype!r}: expected 'float32' or 'float16'")
    if isinstance(ranks, (Integral, str, bytes)):
        raise TypeError(f"ranks={ranks!r}: expected an iterable of ints")
    M = image_to_matrix(arr, dtype=np.float32)
    max_rank = min(M.shape)
    ranks = [check_int(r, "ranks", min_val=1, max_val=max_rank) for r in ranks]
    if not ranks:
        raise ValueError("ranks=[]: expected at least one rank")
    structural_similarity = None
    if ssim:
        try:
            from skimage.metrics import structural_similarity
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "rank_profile(ssim=True) needs scikit-image: pip install 'sksvd[image]'"
            ) from exc
    if jpeg:
        try:
            import PIL  # noqa: F401
        except ImportError as exc:  # pragma: no cover
            raise ImportError(
                "rank_profile(jpeg=True) needs Pillow: pip install 'sksvd[image]'"
            ) from exc
    data_range = _safe_data_range(arr)
    value_range = _value_range(arr)
    comp, Z = _full_svd(M, device, "float32")
    Vt = comp.components_
    S = comp.singular_values_.astype(np.float64)
    total = float(np.sum(M.astype(np.float64) ** 2))
    energy = np.cumsum(S**2) / total if total > 0 else np.ones_like(S)
    sv_share = np.cumsum(S) / S.sum() if S.sum() > 0 else np.ones_like(S)
    itemsize = np.dtype(factor_dtype).itemsize
    rows, cache = [], {}
    for k in ranks:
        Zk = Z[:, :k].astype(factor_dtype).astype(np.float32)
        Vk = Vt[:k].astype(factor_dtype).astype(np.float32)
        rec = matrix_to_image(Zk @ Vk, arr.shape, dtype=arr.dtype, value_range=value_range)
        nbytes = int(k * (M.shape[0] + M.shape[1]) * itemsize)
        row = {
            "rank": k,
            "energy": float(energy[k - 1]),
            "singular_value_share": float(sv_share[k - 1]),
            "compression_ratio": nbytes / arr.nbytes,
            "nbytes": nbytes,
            "psnr": psnr(arr, rec, data_range=data_range) if data_range else float("nan"),
            "ssim": float("nan"),
        }
        if structural_similarity is not None and data_range:
            row["ssim"] = float(structural_similarity(
                arr.astype(np.float64), rec.astype(np.float64), data_range=data_range,
                channel_axis=-1 if arr.ndim == 3 else None))
        row["jpeg_psnr"], row["jpeg_quality"], row["jpeg_nbytes"] = (
            _jpeg_at_bytes(arr, nbytes, data_range, cache) if jpeg else (float("nan"), None, None)
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    df["jpeg_quality"] = df["jpeg_quality"].astype("Int64")
    df["jpeg_nbytes"] = df["jpeg_nbytes"].astype("Int64")
    return df
