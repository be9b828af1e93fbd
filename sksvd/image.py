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

The two factors are stored at 8 bits by default (per component, a linear map
of its range onto 0..255 with a float32 scale and offset): a quarter of the
bytes of float32 factors for a fraction of a dB (:class:`CompressedImage`).
PSNR targets, sizes and the rank profile are all measured on the factors as
stored, and :meth:`CompressedImage.save` / :meth:`CompressedImage.load` write
and read them as a checked ``.npz`` (no pickle).

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

_FACTOR_DTYPES = ("uint8", "float16", "float32")


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


_META_KEY = "meta"
_FORMAT = "sksvd.CompressedImage"
_FORMAT_VERSION = 1
_SCALE_KEYS = ("scores_scale", "scores_offset", "components_scale", "components_offset")


def _check_factor_dtype(factor_dtype):
    if not isinstance(factor_dtype, str) or factor_dtype not in _FACTOR_DTYPES:
        raise ValueError(
            f"factor_dtype={factor_dtype!r}: expected 'uint8', 'float16' or 'float32'"
        )
    return factor_dtype


def _quantize(F, axis, factor_dtype):
    """``(codes, scale, offset)`` of the factor ``F``, one scale per component.

    Components run along the axis that is *not* ``axis`` (``axis=0``: columns
    of the scores; ``axis=1``: rows of the components). float32/float16 are a
    plain cast (``scale = offset = None``). uint8 maps each component's
    ``[min, max]`` linearly onto 0..255: ``x ~= offset + code * scale`` with
    float32 ``scale = (max - min) / 255`` and ``offset = min``, so the
    rounding error of an entry is at most ``scale / 2``.
    """
    if factor_dtype != "uint8":
        return np.ascontiguousarray(F, dtype=factor_dtype), None, None
    F = np.asarray(F, dtype=np.float64)
    if F.size == 0:
        k = F.shape[1 - axis]
        return (np.zeros(F.shape, np.uint8), np.ones(k, np.float32), np.zeros(k, np.float32))
    lo = F.min(axis=axis).astype(np.float32)
    hi = F.max(axis=axis).astype(np.float32)
    scale = ((hi.astype(np.float64) - lo) / 255.0).astype(np.float32)
    scale[~(scale > 0)] = 1.0  # constant component: any scale, all codes 0
    shape = (1, -1) if axis == 0 else (-1, 1)
    codes = np.rint((F - lo.reshape(shape)) / scale.reshape(shape).astype(np.float64))
    codes = np.clip(codes, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(codes), scale, lo


def _dequantize(codes, scale, offset, axis):
    """The float32 factor stored as ``codes`` (see :func:`_quantize`)."""
    if scale is None:
        return codes.astype(np.float32)
    shape = (1, -1) if axis == 0 else (-1, 1)
    out = codes.astype(np.float32)
    out *= scale.reshape(shape)
    out += offset.reshape(shape)
    return out


def _quantized_tails(M, Z, Vt, total):
    """``||M - Z_k Vt_k||_F^2`` for every ``k = 1..r`` exactly (float64), for any factors.

    ``total - 2 sum_{j<=k} z_j^T M v_j + sum_{i,j<=k} (z_i^T z_j)(v_i^T v_j)``:
    one product ``M Vt^T`` and two small Gram matrices, no reconstruction.
    """
    Z = np.asarray(Z, dtype=np.float64)
    Vt = np.asarray(Vt, dtype=np.float64)
    cross = np.einsum("ij,ij->j", np.asarray(M, dtype=np.float64) @ Vt.T, Z)
    H = (Z.T @ Z) * (Vt @ Vt.T)
    fit = np.cumsum(2.0 * np.triu(H, 1).sum(axis=0) + np.diag(H))
    return np.maximum(total - 2.0 * np.cumsum(cross) + fit, 0.0)


def _array_digest(arrays, meta):
    """SHA-256 over ``meta`` (canonical JSON, less its ``sha256``) and the names, dtypes,
    shapes and bytes of ``arrays`` (a dict), in key order."""
    import hashlib
    import json

    h = hashlib.sha256()
    record = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(record, sort_keys=True, allow_nan=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class CompressedImage:
    """A rank-``k`` SVD of an image's matrix, stored as two (quantized) factors.

    The image is rebuilt from ``scores = U_k diag(s_k)`` of shape ``(h, k)``
    and ``components = V_k^T`` of shape ``(k, w*c)``, stored in
    ``factor_dtype``: ``"uint8"`` (the default of :func:`compress_image`: one
    byte per number, with a float32 scale and offset per component and
    factor, ``x ~= offset + code * scale``), ``"float16"`` or ``"float32"``.

    ``nbytes`` is the size of every array :meth:`save` writes:
    ``k (h + w*c)`` bytes plus ``16 k`` for the scales and offsets (uint8),
    or ``k (h + w*c)`` times 2 or 4 (float16, float32). The file holds them
    and a fixed overhead (zip and ``.npy`` headers and a few hundred bytes of
    JSON metadata: shape, dtype, ranges, a SHA-256 of arrays and metadata), about
    2 KB whatever ``k``. The singular values are informative only and not
    saved.

    Attributes
    ----------
    scores : ndarray of shape (h, k)
        In ``factor_dtype`` (uint8 codes when quantized).
    components : ndarray of shape (k, w*c)
    singular_values : ndarray of shape (k,) or None
        ``None`` for an image read back by :meth:`load`.
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
        PSNR of the unrounded, unclipped reconstruction from the stored
        factors (``None`` without a data range): exact from the float64
        spectrum for float32 factors, computed exactly from the stored
        factors (quantization error included) for uint8 and float16.
        Clipping can only raise the PSNR; rounding to an integer dtype adds
        at most ``1/4`` (typically ``1/12``) to the MSE.
    scores_scale, scores_offset, components_scale, components_offset : ndarray of shape (k,) or None
        float32 dequantization of uint8 factors; ``None`` for float factors.

    Examples
    --------
    >>> import numpy as np
    >>> from sksvd.image import compress_image
    >>> img = np.tile(np.arange(8, dtype=np.uint8), (6, 1))
    >>> ci = compress_image(img, n_components=1, factor_dtype="float32")
    >>> ci.nbytes, ci.n_components, round(ci.compression_ratio, 3)
    (56, 1, 0.857)
    >>> bool(np.array_equal(ci.reconstruct(), img))
    True
    >>> compress_image(img, n_components=1).nbytes  # uint8: 14 codes + 16 bytes of scales
    30
    """

    scores: np.ndarray
    components: np.ndarray
    singular_values: np.ndarray | None
    shape: tuple
    dtype: np.dtype
    value_range: tuple
    data_range: float | None
    original_nbytes: int
    energy: float
    singular_value_share: float | None = None
    expected_psnr: float | None = None
    scores_scale: np.ndarray | None = None
    scores_offset: np.ndarray | None = None
    components_scale: np.ndarray | None = None
    components_offset: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_components(self):
        """The rank ``k`` kept."""
        return int(self.components.shape[0])

    @property
    def factor_dtype(self):
        """Storage type of the factors: ``"uint8"``, ``"float16"`` or ``"float32"``."""
        return str(np.dtype(self.scores.dtype))

    def _arrays(self):
        arrays = {"scores": self.scores, "components": self.components}
        for key in _SCALE_KEYS:
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        return arrays

    @property
    def nbytes(self):
        """Bytes of the stored arrays: the two factors, and the scales and offsets of uint8 ones."""
        return int(sum(a.nbytes for a in self._arrays().values()))

    @property
    def compression_ratio(self):
        """``original_nbytes / nbytes``, raw over compressed: above 1 the stored factors are smaller."""
        return self.original_nbytes / self.nbytes

    def factors(self):
        """The two factors as float32 arrays (dequantized): ``(scores, components)``.

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.image import compress_image
        >>> Z, Vt = compress_image(np.eye(4), n_components=2).factors()
        >>> Z.shape, Vt.shape, Z.dtype
        ((4, 2), (2, 4), dtype('float32'))
        """
        Z = _dequantize(self.scores, self.scores_scale, self.scores_offset, axis=0)
        Vt = _dequantize(self.components, self.components_scale, self.components_offset, axis=1)
        return Z, Vt

    def reconstruct(self):
        """The rank-``k`` image, clipped to ``value_range`` and cast to the original dtype.

        The product of the float32 factors, deterministic: an image read back by
        :meth:`load` reconstructs bit for bit the same.

        Returns
        -------
        img : ndarray of the original shape and dtype

        Examples
        --------
        >>> import numpy as np
        >>> from sksvd.image import compress_image
        >>> img = np.eye(4)
        >>> compress_image(img, n_components=4).reconstruct().round(2)[0]
        array([1., 0., 0., 0.])
        """
        Z, Vt = self.factors()
        return matrix_to_image(Z @ Vt, self.shape, dtype=self.dtype, value_range=self.value_range)

    def save(self, path):
        """Write the compressed image to ``path``: an uncompressed ``.npz`` of its arrays.

        The arrays are those counted by ``nbytes`` plus ``meta``, UTF-8 JSON
        (as uint8) with the shape, dtype, value and data ranges, energy,
        expected PSNR and a SHA-256 of the arrays and metadata; :meth:`load` reads it
        back without pickle. The file is written to ``path`` as given (no
        ``.npz`` is appended).

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        int
            The size of the file in bytes.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from sksvd.image import CompressedImage, compress_image
        >>> ci = compress_image(np.eye(8), n_components=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "eye.npz")
        >>> size = ci.save(path)
        >>> size == os.path.getsize(path) and size - ci.nbytes < 3000
        True
        >>> bool(np.array_equal(CompressedImage.load(path).reconstruct(), ci.reconstruct()))
        True
        """
        import json
        import os

        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items()}
        meta = {
            "format": _FORMAT, "version": _FORMAT_VERSION,
            "shape": [int(s) for s in self.shape], "dtype": np.dtype(self.dtype).str,
            "value_range": [float(v) for v in self.value_range],
            "data_range": None if self.data_range is None else float(self.data_range),
            "original_nbytes": int(self.original_nbytes), "energy": float(self.energy),
            "singular_value_share": None if self.singular_value_share is None
            else float(self.singular_value_share),
            "expected_psnr": None if self.expected_psnr is None else float(self.expected_psnr),
        }
        meta["sha256"] = _array_digest(arrays, meta)
        arrays[_META_KEY] = np.frombuffer(json.dumps(meta, allow_nan=True).encode(), np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return int(os.path.getsize(path))

    @classmethod
    def load(cls, path):
        """Read a compressed image written by :meth:`save`; never executes code.

        ``np.load(allow_pickle=False)``; every array's dtype and shape and the
        metadata are checked, and the arrays must match the SHA-256 written
        with them.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        CompressedImage

        Raises
        ------
        ValueError
            The file is truncated, not such a file, or its content was
            modified (naming the path and what is wrong).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from sksvd.image import CompressedImage, compress_image
        >>> path = os.path.join(tempfile.mkdtemp(), "eye.npz")
        >>> _ = compress_image(np.eye(8), n_components=2).save(path)
        >>> CompressedImage.load(path).n_components
        2
        """
        import json
        import zipfile

        where = f"{str(path)!r}"
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError(f"a {type(loaded).__name__}, not an .npz archive")
            with loaded as npz:
                arrays = {key: npz[key] for key in npz.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
            raise ValueError(
                f"path={where}: not a readable sksvd compressed image (truncated, damaged or "
                f"not an .npz written by CompressedImage.save): {exc}"
            ) from None
        if not isinstance(arrays, dict) or _META_KEY not in arrays:
            raise ValueError(f"path={where}: no '{_META_KEY}' entry: not written by "
                             "CompressedImage.save")
        meta_raw = arrays.pop(_META_KEY)
        try:
            if meta_raw.dtype != np.uint8 or meta_raw.ndim != 1:
                raise ValueError(f"dtype={meta_raw.dtype}, shape={meta_raw.shape}")
            meta = json.loads(meta_raw.tobytes().decode("utf-8"))
            if not isinstance(meta, dict):
                raise ValueError(f"a {type(meta).__name__}, not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"path={where}: unreadable metadata ({exc})") from None
        if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
            raise ValueError(f"path={where}: format={meta.get('format')!r}, version="
                             f"{meta.get('version')!r}: expected {_FORMAT!r} version "
                             f"{_FORMAT_VERSION}")
        if meta.get("sha256") != _array_digest(arrays, meta):
            raise ValueError(f"path={where}: the arrays and metadata do not match the SHA-256 "
                             "saved with them: the file was modified")
        return cls._from_arrays(arrays, meta, where)

    @classmethod
    def _from_arrays(cls, arrays, meta, where):
        """Check the arrays and metadata of a file and build the object."""
        def bad(what):
            return ValueError(f"path={where}: {what}")

        Z, Vt = arrays.get("scores"), arrays.get("components")
        if Z is None or Vt is None:
            raise bad(f"arrays {sorted(arrays)}: expected 'scores' and 'components'")
        ftype = str(Z.dtype)
        if ftype not in _FACTOR_DTYPES or Vt.dtype != Z.dtype:
            raise bad(f"factor dtypes {Z.dtype}/{Vt.dtype}: expected two of one of "
                      f"{_FACTOR_DTYPES}")
        expected_keys = {"scores", "components", *(_SCALE_KEYS if ftype == "uint8" else ())}
        if set(arrays) != expected_keys:
            raise bad(f"arrays {sorted(arrays)}: expected {sorted(expected_keys)}")
        try:
            shape = tuple(int(s) for s in meta["shape"])
            dtype = np.dtype(meta["dtype"])
            value_range = tuple(float(v) for v in meta["value_range"])
            data_range = None if meta["data_range"] is None else float(meta["data_range"])
            original_nbytes = int(meta["original_nbytes"])
            energy = float(meta["energy"])
            share = meta.get("singular_value_share")
            share = None if share is None else float(share)
            expected = meta.get("expected_psnr")
            expected = None if expected is None else float(expected)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"metadata {exc!r}: expected shape, dtype, value_range, data_range, "
                      "original_nbytes and energy") from None
        if dtype.kind not in "uif" or dtype.itemsize > 8:
            raise bad(f"dtype={dtype}: expected an integer or float image dtype")
        if len(shape) not in (2, 3) or min(shape) < 1 or len(value_range) != 2:
            raise bad(f"shape={shape}, value_range={value_range}: expected (h, w) or (h, w, c) "
                      "and (low, high)")
        h, wc = shape[0], int(np.prod(shape[1:]))
        if Z.ndim != 2 or Vt.ndim != 2 or Z.shape[0] != h or Vt.shape[1] != wc                 or Z.shape[1] != Vt.shape[0] or Z.shape[1] < 1:
            raise bad(f"factor shapes {Z.shape} and {Vt.shape}: expected (h, k) and (k, w*c) "
                      f"for an image of shape {shape}")
        k = Z.shape[1]
        scales = {}
        for key in _SCALE_KEYS if ftype == "uint8" else ():
            a = arrays[key]
            if a.dtype != np.float32 or a.shape != (k,) or not np.all(np.isfinite(a)):
                raise bad(f"{key}: dtype={a.dtype}, shape={a.shape}: expected {k} finite "
                          "float32 values")
            scales[key] = a
        if ftype != "uint8" and not (np.all(np.isfinite(Z)) and np.all(np.isfinite(Vt))):
            raise bad("the factors contain NaN or inf")
        return cls(scores=Z, components=Vt, singular_values=None, shape=shape, dtype=dtype,
                   value_range=value_range, data_range=data_range,
                   original_nbytes=original_nbytes, energy=energy,
                   singular_value_share=share, expected_psnr=expected, **scales)


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


def _allowed_tail(n_values, data_range, target):
    """Largest squared error ``sum (M - M_k)^2`` that still gives ``target`` dB."""
    return n_values * data_range**2 * 10 ** (-target / 10)


def _spectrum_tails(S, total):
    """``tail[k-1] = ||M||_F^2 - sum_{i<=k} s_i^2`` for ``k = 1..len(S)``, float64."""
    energy = np.asarray(S, dtype=np.float64) ** 2
    return np.maximum(total - np.cumsum(energy), 0.0)


def _psnr_of_tail(tail, n_values, data_range):
    if data_range is None:
        return None
    return float("inf") if tail <= 0 else float(10 * np.log10(n_values * data_range**2 / tail))


def _safe_data_range(arr):
    try:
        return _default_data_range(arr)
    except ValueError:
        return None


def _full_svd(M, device):
    """The exact SVD of ``M`` in float64 (on ``device``): ``(scores U S, Vt, S)``.

    float64 whatever the device, so that ranks chosen from the spectrum (energy
    shares, PSNR targets) are the same on a CPU and a GPU.
    """
    from .compression import TruncatedSVDCompressor

    comp = TruncatedSVDCompressor(min(M.shape), algorithm="full", device=device,
                                  dtype="float64")
    Z = comp.fit_transform(np.asarray(M, dtype=np.float64))
    return Z, comp.components_, comp.singular_values_.astype(np.float64)


def _stored_factors(Z, Vt, factor_dtype):
    """``(codes_Z, scale_Z, offset_Z, codes_V, scale_V, offset_V)`` of the factors."""
    return (*_quantize(Z, 0, factor_dtype), *_quantize(Vt, 1, factor_dtype))


def compress_image(img, n_components=None, *, psnr=None, criterion="energy", algorithm="auto",
                   factor_dtype="uint8", device="auto", random_state=None):
    """Compress an image by truncated SVD of its ``(h, w*c)`` matrix.

    The rank is chosen by exactly one of:

    - ``n_components`` int: that rank;
    - ``n_components`` float in (0, 1): the smallest rank whose singular
      values hold that share, of ``sum s_i^2`` (``criterion="energy"``) or of
      ``sum s_i`` (``criterion="singular_values"``), see
      :class:`sksvd.compression.TruncatedSVDCompressor`;
    - ``psnr`` (dB): the smallest rank ``k`` whose reconstruction from the
      stored factors reaches that PSNR before rounding to the image's dtype,
      ``10 log10(R^2 h w c / ||M - Z_k V_k||_F^2) >= psnr``. One exact SVD
      in float64 (on ``device``) gives every rank: for float32 factors the
      error is the tail of the spectrum ``sum_{i>k} s_i^2``; for uint8 and
      float16 factors it is computed exactly from the quantized factors
      (their rounding included), for every rank at once. A target above
      what the factors reach at full rank (uint8 factors cap the PSNR) is a
      ``ValueError``.

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
    factor_dtype : {"uint8", "float16", "float32"}, default="uint8"
        Storage type of the two factors (counted in ``nbytes``). uint8 keeps
        a float32 scale and offset per component (see :class:`CompressedImage`):
        on ``china.jpg`` and ``flower.jpg`` at ranks 50 to 200 its PSNR is
        within 0.4 dB of float32 factors' at about a quarter of their bytes
        (``benchmarks/results/compression_quantized.md``).
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
    >>> ci.n_components, round(ci.expected_psnr, 2), ci.factor_dtype
    (60, 30.13, 'uint8')
    """
    arr = _check_image(img)
    if (n_components is None) == (psnr is None):
        raise ValueError(
            f"n_components={n_components!r}, psnr={psnr!r}: give exactly one of them"
        )
    factor_dtype = _check_factor_dtype(factor_dtype)
    if criterion not in ("energy", "singular_values"):
        raise ValueError(f"criterion={criterion!r}: expected 'energy' or 'singular_values'")
    M = image_to_matrix(arr, dtype=np.float64)
    n_values = M.size
    data_range = _safe_data_range(arr)
    total = float(np.einsum("ij,ij->", M, M))
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
        Z, Vt, S = _full_svd(M, device)
        stored = _stored_factors(Z, Vt, factor_dtype)
        if factor_dtype == "float32":
            tails = _spectrum_tails(S, total)
        else:
            Zq = _dequantize(*stored[:3], axis=0)
            Vq = _dequantize(*stored[3:], axis=1)
            tails = _quantized_tails(M, Zq, Vq, total)
        ok = np.nonzero(tails <= _allowed_tail(n_values, data_range, psnr))[0]
        if ok.size == 0:
            best = _psnr_of_tail(float(tails.min()), n_values, data_range)
            raise ValueError(
                f"psnr={psnr}: above what {factor_dtype} factors reach at any rank "
                f"({best:.2f} dB); lower the target or use factor_dtype='float32'"
            )
        k = int(ok[0]) + 1
        sv_share = float(np.sum(S[:k]) / max(float(np.sum(S)), 1e-300))
        kept = float(np.sum(S[:k] ** 2))
        expected = _psnr_of_tail(float(tails[k - 1]), n_values, data_range)
        zq, zs, zo, vq, vs, vo = (stored[0][:, :k], stored[1], stored[2],
                                  stored[3][:k], stored[4], stored[5])
        if zs is not None:
            zs, zo, vs, vo = zs[:k], zo[:k], vs[:k], vo[:k]
        S = S[:k]
    else:
        from .compression import TruncatedSVDCompressor

        n_components = check_n_components(n_components, n_samples=M.shape[0],
                                          n_features=M.shape[1])
        comp = TruncatedSVDCompressor(n_components, criterion=criterion, algorithm=algorithm,
                                      device=device, random_state=random_state)
        Z = comp.fit_transform(M.astype(np.float32))
        Vt, S = comp.components_, comp.singular_values_.astype(np.float64)
        zq, zs, zo, vq, vs, vo = _stored_factors(Z, Vt, factor_dtype)
        kept = float(np.sum(S**2))
        if factor_dtype == "float32":
            expected = _psnr_of_tail(max(total - kept, 0.0), n_values, data_range)
        else:
            tail = _quantized_tails(M, _dequantize(zq, zs, zo, axis=0),
                                    _dequantize(vq, vs, vo, axis=1), total)[-1]
            expected = _psnr_of_tail(float(tail), n_values, data_range)
    return CompressedImage(
        scores=np.ascontiguousarray(zq), components=np.ascontiguousarray(vq),
        singular_values=np.asarray(S, dtype=np.float32),
        shape=arr.shape,
        dtype=arr.dtype,
        value_range=_value_range(arr),
        data_range=data_range,
        original_nbytes=int(arr.nbytes),
        energy=kept / total if total > 0 else 1.0,
        singular_value_share=sv_share,
        expected_psnr=expected,
        scores_scale=zs, scores_offset=zo, components_scale=vs, components_offset=vo,
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


def rank_profile(img, ranks, *, ssim=True, jpeg=True, factor_dtype="uint8", device="auto"):
    """Quality and size of the rank-``k`` SVD compression of an image, for several ranks.

    One exact SVD of the image's matrix (float64) gives every rank; each
    rank's factors are stored as :func:`compress_image` stores them, in
    ``factor_dtype``, and measured after that quantization. For each rank:

    - ``energy``: ``sum_{i<=k} s_i^2 / ||M||_F^2``;
    - ``singular_value_share``: ``sum_{i<=k} s_i / sum_i s_i``;
    - ``compression_ratio``: raw over compressed, ``raw_nbytes / nbytes``
      (above 1 the factors are smaller than the raw image);
    - ``nbytes``: as :attr:`CompressedImage.nbytes` in ``factor_dtype``;
      ``float32_nbytes`` and ``uint8_nbytes`` the same factors in those
      types, ``raw_nbytes`` the image's;
    - ``psnr``, ``ssim``: of the reconstruction from the stored factors
      (rounded and clipped to the image's dtype) against the original; SSIM
      from :func:`skimage.metrics.structural_similarity`;
    - ``jpeg_psnr``, ``jpeg_quality``, ``jpeg_nbytes``: the best JPEG (Pillow,
      ``optimize=True``, quality 1..100) no larger than ``nbytes``; NaN when
      quality 1 is already larger, or the image has an alpha channel (JPEG
      cannot hold it). uint16 and float images are encoded at 8 bits and the
      decoded image is compared at the original scale;
    - ``jpeg_max_psnr``, ``jpeg_max_nbytes``: JPEG at quality 100, the best
      PSNR JPEG reaches at any size (the same in every row).

    Parameters
    ----------
    img : array-like of shape (h, w) or (h, w, c)
    ranks : iterable of int
        Each in ``[1, min(h, w*c)]``.
    ssim : bool, default=True
        Needs scikit-image (the ``image`` extra).
    jpeg : bool, default=True
        Needs Pillow (the ``image`` extra).
    factor_dtype : {"uint8", "float16", "float32"}, default="uint8"
    device : str, default="auto"

    Returns
    -------
    pandas.DataFrame
        Columns rank, energy, singular_value_share, compression_ratio, nbytes,
        psnr, ssim, jpeg_psnr, jpeg_quality, jpeg_nbytes, float32_nbytes,
        uint8_nbytes, raw_nbytes, jpeg_max_psnr, jpeg_max_nbytes (one row per
        rank).

    Examples
    --------
    >>> from sklearn.datasets import load_sample_image
    >>> from sksvd.image import rank_profile
    >>> img = load_sample_image("china.jpg")[::4, ::4]  # a 107 x 160 thumbnail
    >>> df = rank_profile(img, [10, 50], ssim=False, jpeg=False)
    >>> df[["rank", "nbytes", "float32_nbytes"]].to_numpy().tolist()
    [[10, 6030, 23480], [50, 30150, 117400]]
    """
    import pandas as pd

    arr = _check_image(img)
    factor_dtype = _check_factor_dtype(factor_dtype)
    if isinstance(ranks, (Integral, str, bytes)):
        raise TypeError(f"ranks={ranks!r}: expected an iterable of ints")
    M = image_to_matrix(arr, dtype=np.float64)
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
    Z, Vt, S = _full_svd(M, device)
    total = float(np.einsum("ij,ij->", M, M))
    energy = np.cumsum(S**2) / total if total > 0 else np.ones_like(S)
    sv_share = np.cumsum(S) / S.sum() if S.sum() > 0 else np.ones_like(S)
    # Quantized once: the per-component scales do not depend on the rank kept.
    Zq = _dequantize(*_quantize(Z, 0, factor_dtype), axis=0)
    Vq = _dequantize(*_quantize(Vt, 1, factor_dtype), axis=1)
    h, wc = M.shape
    cache = {}
    jpeg_max = _jpeg_at_bytes(arr, float("inf"), data_range, cache) if jpeg \
        else (float("nan"), None, None)
    rows = []
    for k in ranks:
        rec = matrix_to_image(Zq[:, :k] @ Vq[:k], arr.shape, dtype=arr.dtype,
                              value_range=value_range)
        sizes = {t: k * (h + wc) * np.dtype(t).itemsize + (16 * k if t == "uint8" else 0)
                 for t in _FACTOR_DTYPES}
        nbytes = int(sizes[factor_dtype])
        row = {
            "rank": k,
            "energy": float(energy[k - 1]),
            "singular_value_share": float(sv_share[k - 1]),
            "compression_ratio": arr.nbytes / nbytes,
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
        row["float32_nbytes"] = int(sizes["float32"])
        row["uint8_nbytes"] = int(sizes["uint8"])
        row["raw_nbytes"] = int(arr.nbytes)
        row["jpeg_max_psnr"], row["jpeg_max_nbytes"] = jpeg_max[0], jpeg_max[2]
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("jpeg_quality", "jpeg_nbytes", "jpeg_max_nbytes"):
        df[col] = df[col].astype("Int64")
    return df
