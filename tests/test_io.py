"""Tests of sksvd.io: round trips, refused files, crash-safe saves, pickle/joblib."""

import json
import os
import pickle
import sys
import zipfile

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import sksvd
from sksvd import io as skio
from sksvd.recommenders._base import BaseRecommender


class TinyRecommender(BaseRecommender):
    """PureSVD by numpy's dense SVD (test data only), with fitted attributes
    of every kind save() handles."""

    _parameter_constraints: dict = {
        "n_components": [int], "device": [str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype], "random_state": [None, int],
        "verbose": [int],
    }

    def __init__(self, n_components=2, *, device="cpu", dtype="float32", random_state=None,
                 verbose=0):
        self.n_components = n_components
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, X):
        U, S, Vt = np.linalg.svd(X.toarray().astype(np.float64), full_matrices=False)
        k = self.n_components
        self.item_factors_ = np.ascontiguousarray(Vt[:k].T, dtype=np.float32)
        self.user_factors_ = (U[:, :k] * S[:k]).astype(np.float32)
        self.singular_values_ = S[:k]
        self.seen_ = X.copy()  # a sparse attribute
        self.labels_ = np.array([f"item{i}" for i in range(X.shape[1])], dtype=object)
        self.scale_ = np.float32(1.25)
        self.loss_curve_ = [3.0, 1.5, float("nan")]
        self.shape_ = (int(X.shape[0]), int(X.shape[1]))
        self.name_ = "tiny"
        self.flags_ = np.array([True, False])
        self.empty_ = None

    def _fold_in(self, X, device, dtype):
        W = torch.as_tensor(np.asarray(X @ self.item_factors_.astype(np.float64)))
        return W.to(device=device, dtype=dtype), None


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(skio._REGISTRY, skio._qualified_name(TinyRecommender), TinyRecommender)


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    return sp.random(30, 12, density=0.4, format="csr", random_state=rng,
                     data_rvs=lambda n: rng.integers(1, 6, n)).astype(np.float32)


@pytest.fixture
def fitted(registered, X):
    return TinyRecommender(n_components=3).fit(X)


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "model.npz"
    skio.save(fitted, path)
    return path


def _same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    for x, y in zip(a.recommend(X, k=4), b.recommend(X, k=4), strict=True):
        np.testing.assert_array_equal(x, y)


def _rewrite(path, *, header=None, arrays=None, resign=True):
    """Rebuild a model file with an edited header / arrays (zip CRCs recomputed);
    ``resign`` recomputes the sha256 so that only the edited field is wrong."""
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    h = json.loads(data.pop("__header__").tobytes())
    if header:
        header(h)
    if arrays:
        arrays(data)
    if resign:
        h["sha256"] = skio._digest(h, data)
    blob = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __header__=blob, **data)
    skio._seal(path)  # a well-formed file whose content was edited


# --------------------------------------------------------------------------- round trips
def test_round_trip_identical(fitted, saved, X):
    loaded = skio.load(saved)
    assert type(loaded) is TinyRecommender
    assert loaded.get_params() == fitted.get_params()
    _same_predictions(fitted, loaded, X)
    np.testing.assert_array_equal(loaded.singular_values_, fitted.singular_values_)
    assert loaded.singular_values_.dtype == np.float64
    assert sp.issparse(loaded.seen_) and loaded.seen_.format == "csr"
    assert (loaded.seen_ != fitted.seen_).nnz == 0
    assert loaded.labels_.dtype == object and loaded.labels_.tolist() == fitted.labels_.tolist()
    assert type(loaded.scale_) is np.float32 and loaded.scale_ == fitted.scale_
    assert loaded.loss_curve_[:2] == [3.0, 1.5] and np.isnan(loaded.loss_curve_[2])
    assert loaded.shape_ == fitted.shape_ and isinstance(loaded.shape_, tuple)
    assert loaded.name_ == "tiny" and loaded.empty_ is None
    assert (loaded.n_users_, loaded.n_items_, loaded.n_features_in_) == (30, 12, 12)
    assert sorted(k for k in vars(loaded) if k.endswith("_")) == sorted(
        k for k in vars(fitted) if k.endswith("_") and not k.startswith("_"))


def test_file_is_plain_npz_with_json_header(saved, fitted):
    with np.load(saved, allow_pickle=False) as npz:
        header = json.loads(npz["__header__"].tobytes())
        np.testing.assert_array_equal(npz["item_factors_"], fitted.item_factors_)
    assert header["format_version"] == "1.0" and header["sksvd_version"] == sksvd.__version__
    assert header["class"].endswith("TinyRecommender")
    assert header["params"]["n_components"] == 3
    assert header["arrays"]["item_factors_"] == {"dtype": "<f4", "shape": [12, 3]}
    assert len(header["sha256"]) == 64


def test_param_types_survive(registered, X, tmp_path):
    for dtype in (torch.float64, np.float64, np.dtype("float32"), "float64"):
        est = TinyRecommender(dtype=dtype, device=torch.device("cpu"), random_state=3).fit(X)
        skio.save(est, tmp_path / "m.npz")
        loaded = skio.load(tmp_path / "m.npz")
        assert loaded.get_params() == est.get_params()
        assert type(loaded.dtype) is type(dtype)


def test_load_device_override(saved):
    assert skio.load(saved, device="cpu").device == "cpu"
    _rewrite(saved, header=lambda h: h["params"].update(device="cuda"))
    assert skio.load(saved).device == "cuda"
    assert skio.load(saved, device="cpu").device == "cpu"  # a GPU model on a CPU machine


def test_unfitted_round_trip(registered, tmp_path):
    skio.save(TinyRecommender(n_components=5), tmp_path / "m.npz")
    loaded = skio.load(tmp_path / "m.npz")
    assert loaded.n_components == 5
    with pytest.raises(NotFittedError):
        check_is_fitted(loaded)


def test_pickle_and_joblib(fitted, X, tmp_path):
    _same_predictions(fitted, pickle.loads(pickle.dumps(fitted)), X)
    joblib.dump(fitted, tmp_path / "m.joblib")
    _same_predictions(fitted, joblib.load(tmp_path / "m.joblib"), X)


def _public_estimator(name):
    try:
        return getattr(sksvd, name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"sksvd.{name} not available yet ({exc})")


@pytest.mark.parametrize("name, loss", [("SVDRecommender", None), ("FunkSVD", None),
                                        ("AsySVD", None), ("FunkSVD", "mse"),
                                        ("AsySVD", "mse")])
def test_sksvd_recommenders_round_trip(name, loss, X, tmp_path):
    cls = _public_estimator(name)
    params = {"n_components": 3, "random_state": 0, "device": "cpu", "n_epochs": 2,
              "loss": loss}
    est = cls(**{k: v for k, v in params.items()
                 if k in cls().get_params() and v is not None}).fit(X)
    path = skio.save(est, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert json.loads(npz["__header__"].tobytes())["class"] == f"sksvd.{name}"
    loaded = skio.load(path)
    assert type(loaded) is cls and loaded.get_params() == est.get_params()
    _same_predictions(est, loaded, X)
    _same_predictions(est, pickle.loads(pickle.dumps(est)), X)
    if loss == "mse":  # the rating model's ratings survive too
        users, items = np.arange(4), np.arange(4)
        np.testing.assert_array_equal(loaded.predict_ratings(users, items),
                                      est.predict_ratings(users, items))


def test_compressor_round_trip(tmp_path):
    cls = _public_estimator("TruncatedSVDCompressor")
    A = np.random.default_rng(1).normal(size=(25, 10))
    est = cls(n_components=4, random_state=0).fit(A)
    loaded = skio.load(skio.save(est, tmp_path / "c.sksvd"))
    assert type(loaded) is cls and loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(loaded.transform(A), est.transform(A))
    Z = est.transform(A)
    np.testing.assert_array_equal(loaded.inverse_transform(Z), est.inverse_transform(Z))
    np.testing.assert_array_equal(joblib.load(_dump(est, tmp_path)).transform(A),
                                  est.transform(A))


def _dump(est, tmp_path):
    joblib.dump(est, tmp_path / "c.joblib")
    return tmp_path / "c.joblib"


# --------------------------------------------------------------------------- refusals
def test_every_flipped_byte_refused(saved):
    good = saved.read_bytes()
    n = len(good)  # bytes everywhere: data, zip metadata, header, the checksum itself
    for pos in sorted(set(range(0, n, 11)) | set(range(n - 120, n)) | set(range(64))):
        raw = bytearray(good)
        raw[pos] ^= 0x01 if pos % 2 else 0xFF
        saved.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match=r"model\.npz: .*(altered|truncated|not an sksvd)"):
            skio.load(saved)


def test_flipped_array_byte_is_a_sha_mismatch(saved):
    def poke(arrays):
        raw = bytearray(arrays["item_factors_"].tobytes())
        raw[5] ^= 0x01
        arrays["item_factors_"] = np.frombuffer(bytes(raw), dtype="<f4").reshape(12, 3)

    _rewrite(saved, arrays=poke, resign=False)  # valid zip, CRCs right, content altered
    with pytest.raises(ValueError, match="sha256 of the arrays and header mismatch"):
        skio.load(saved)


def test_altered_parameter_is_a_sha_mismatch(saved):
    _rewrite(saved, header=lambda h: h["params"].update(n_components=7), resign=False)
    with pytest.raises(ValueError, match="sha256 of the arrays and header mismatch"):
        skio.load(saved)


def test_cut_file_refused(saved):
    good = saved.read_bytes()
    for n in sorted(set(range(0, len(good), 29)) | set(range(len(good) - 100, len(good)))):
        saved.write_bytes(good[:n])
        with pytest.raises(ValueError, match=r"(truncated or corrupted|empty file)"):
            skio.load(saved)


def test_pickle_payload_refused(fitted, tmp_path):
    p = tmp_path / "model.npz"
    p.write_bytes(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="is a pickle payload"):
        skio.load(p)
    joblib.dump(fitted, p)
    with pytest.raises(ValueError, match="is a pickle payload"):
        skio.load(p)
    p.write_bytes(pickle.dumps(fitted, protocol=0))
    with pytest.raises(ValueError, match="is a pickle payload"):
        skio.load(p)


def test_pickled_object_array_member_refused(saved):
    with np.load(saved, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    data["evil_"] = np.array([print], dtype=object)
    h = json.loads(data["__header__"].tobytes())
    h["arrays"]["evil_"] = {"dtype": "|O", "shape": [1]}
    data["__header__"] = np.frombuffer(json.dumps(h).encode(), dtype=np.uint8)
    with open(saved, "wb") as f:
        np.savez(f, allow_pickle=True, **data)
    skio._seal(saved)
    with pytest.raises(ValueError, match="'evil_' is a pickled object array; refused"):
        skio.load(saved)


@pytest.mark.parametrize("name", ["os.system", "evil_module_xyz.Thing",
                                  "sklearn.linear_model.LinearRegression", "sksvd.Nope"])
def test_unknown_class_refused_without_import(saved, name):
    _rewrite(saved, header=lambda h: h.update({"class": name}))
    with pytest.raises(ValueError, match=f"unknown class '{name}': not an sksvd estimator"):
        skio.load(saved)
    assert "evil_module_xyz" not in sys.modules


def test_registered_class_needed(saved, monkeypatch):
    monkeypatch.delitem(skio._REGISTRY, skio._qualified_name(TinyRecommender))
    with pytest.raises(ValueError, match="unknown class"):
        skio.load(saved)


def test_newer_major_format_refused(saved):
    _rewrite(saved, header=lambda h: h.update(format_version="2.0"))
    with pytest.raises(ValueError, match=r"format version 2\.0 is newer than this sksvd reads"):
        skio.load(saved)
    _rewrite(saved, header=lambda h: h.update(format_version="1.7"))  # newer minor: fine
    assert skio.load(saved).n_components == 3


def test_bad_attribute_names_refused(saved):
    for bad in ("__class__", "_private_", "fit", "n_components", "a.b_"):
        def edit(h, bad=bad):
            h["attributes"][bad] = {"kind": "json", "value": 1}
        _rewrite(saved, header=edit)
        with pytest.raises(ValueError, match=f"attribute name '{bad}' refused"):
            skio.load(saved)
        _rewrite(saved, header=lambda h, bad=bad: h["attributes"].pop(bad))


def test_other_files_refused(tmp_path, saved):
    p = tmp_path / "plain.npz"
    np.savez(p, a=np.arange(3))
    with pytest.raises(ValueError, match="not written by sksvd.io.save"):
        skio.load(p)
    skio._seal(p)
    with pytest.raises(ValueError, match="no sksvd header"):
        skio.load(p)
    p.write_text("hello")
    with pytest.raises(ValueError, match="not an sksvd model file"):
        skio.load(p)
    with pytest.raises(FileNotFoundError):
        skio.load(tmp_path / "missing.npz")
    _rewrite(saved, arrays=lambda a: a.pop("user_factors_"))
    with pytest.raises(ValueError, match=r"missing \['user_factors_'\]"):
        skio.load(saved)


def test_compressed_member_refused(saved, tmp_path):
    out = tmp_path / "z.npz"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    skio._seal(out)
    with pytest.raises(ValueError, match="is compressed"):
        skio.load(out)


def test_version_mismatch_warns(saved):
    _rewrite(saved, header=lambda h: h.update(sksvd_version="0.0.1"))
    with pytest.warns(UserWarning, match="saved with sksvd 0.0.1"):
        skio.load(saved)


# --------------------------------------------------------------------------- crash safety
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_crash_mid_save_keeps_previous_file(fitted, saved, X, monkeypatch, error):
    good = saved.read_bytes()
    other = TinyRecommender(n_components=2).fit(X)

    def broken_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a model")
        raise error("disk full")

    with monkeypatch.context() as m:
        m.setattr(np, "savez", broken_savez)
        with pytest.raises(error, match="disk full"):
            skio.save(other, saved)
    assert saved.read_bytes() == good
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]  # no temp left
    _same_predictions(fitted, skio.load(saved), X)


def test_save_overwrites_atomically(fitted, saved, X, registered):
    other = TinyRecommender(n_components=2).fit(X)
    skio.save(other, saved)
    assert skio.load(saved).n_components == 2
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]


# --------------------------------------------------------------------------- save errors
def test_save_refuses_what_it_cannot_store(registered, X, tmp_path):
    with pytest.raises(TypeError, match="saves only sksvd estimators"):
        from sklearn.decomposition import TruncatedSVD

        skio.save(TruncatedSVD(2).fit(X), tmp_path / "m.npz")
    est = TinyRecommender().fit(X)
    est.random_state = np.random.RandomState(0)
    with pytest.raises(TypeError, match="parameter random_state=RandomState"):
        skio.save(est, tmp_path / "m.npz")
    est = TinyRecommender().fit(X)
    est.cache_ = torch.zeros(2)
    with pytest.raises(TypeError, match="attribute cache_: a torch tensor"):
        skio.save(est, tmp_path / "m.npz")
    est = TinyRecommender().fit(X)
    est.things_ = np.array([1, "a"], dtype=object)
    with pytest.raises(TypeError, match="attribute things_: an object array"):
        skio.save(est, tmp_path / "m.npz")
    assert not any(tmp_path.iterdir())


def test_allowlist_holds_sksvd_estimators_only():
    classes, _ = skio._estimator_classes()
    for key, cls in classes.items():
        assert cls.__module__.startswith("sksvd.") or key in skio._REGISTRY
    assert all(k.split(".")[0] == "sksvd" for k in classes if k not in skio._REGISTRY)
    assert os.path.basename(skio.__file__) == "io.py"


# --------------------------------------------------------------------------- why not skops
def test_skops_fails_our_guarantees(fitted, registered, X, tmp_path):
    """The two guarantees skops.io misses (see sksvd.io's module docstring), which ours keep."""
    sio = pytest.importorskip("skops.io")
    # 1. no integrity check: an edited value (zip CRCs recomputed) loads silently
    p = tmp_path / "m.skops"
    sio.dump(fitted, p)
    with zipfile.ZipFile(p) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    schema = json.loads(members["schema.json"])
    schema["content"]["content"]["n_components"]["content"] = "7"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    assert sio.load(p, trusted=sio.get_untrusted_types(file=p)).n_components == 7
    saved = skio.save(fitted, tmp_path / "m.npz")
    _rewrite(saved, header=lambda h: h["params"].update(n_components=7), resign=False)
    with pytest.raises(ValueError, match="sha256"):
        skio.load(saved)
    # 2. a torch.dtype parameter does not round-trip, even trusted
    est = TinyRecommender(dtype=torch.float64)
    blob = sio.dumps(est)
    with pytest.raises(TypeError, match="not safe"):
        sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    assert skio.load(skio.save(est, tmp_path / "d.npz")).dtype is torch.float64
