"""Tests of sksvd.datasets against the real MovieLens files, tiny hand-made
releases in each official format, and a local HTTP server for downloads."""

import csv
import functools
import hashlib
import http.server
import io
import pickle
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sksvd import datasets
from sksvd.datasets import get_data_home, load_movielens, load_ratings

pytestmark = pytest.mark.filterwarnings("ignore:.*u.item.*:UserWarning")


# --------------------------------------------------------------------------- helpers
def _read_tab(path):
    """Independent parse of a MovieLens tab file with numpy."""
    return np.loadtxt(path, dtype=np.int64, delimiter="\t")


def _fake_100k(folder, *, data=None, info=True, folds=True):
    """A tiny release in the ml-100k format: 3 users, 4 items, 6 ratings."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = data if data is not None else [
        (1, 10, 5, 881250949), (1, 20, 3, 881250950), (2, 10, 4, 881250951),
        (2, 30, 1, 881250952), (3, 40, 2, 881250953), (3, 20, 5, 881250954),
    ]
    (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    flags = ["0"] * 19
    item_lines = []
    for i, (mid, title) in enumerate([(10, "Toy Story (1995)"), (20, "Café, The (1990)"),
                                      (30, "Heat (1995)"), (40, "unknown")]):
        f = list(flags)
        f[i + 1] = "1"  # Action, Adventure, Animation, Children's
        item_lines.append(f"{mid}|{title}|01-Jan-1995||http://x|" + "|".join(f) + "\n")
    (folder / "u.item").write_bytes("".join(item_lines).encode("latin-1"))
    if info:
        (folder / "u.info").write_text(f"3 users\n4 items\n{len(rows)} ratings\n")
    if folds:
        lines = (folder / "u.data").read_text().splitlines(keepends=True)
        (folder / "u1.base").write_text("".join(lines[:4]))
        (folder / "u1.test").write_text("".join(lines[4:]))
    return folder


def _zip_folder(folder, dest, arc_root=None):
    arc_root = arc_root or folder.name
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{arc_root}/{p.name}")
    return hashlib.sha256(dest.read_bytes()).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        cut = getattr(self.server, "cut_to", None)
        if cut is None:
            return super().do_GET()
        # announce the full length, send only the first `cut` bytes, then close
        body = (self.server.root / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "srv"
    root.mkdir()
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    httpd.root = root
    httpd.cut_to = None
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setattr(datasets, "BASE_URL", f"http://127.0.0.1:{httpd.server_port}/")
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def served_100k(tmp_path, server, monkeypatch):
    """The fake ml-100k zip on the server, its sha256 registered."""
    src = _fake_100k(tmp_path / "build" / "ml-100k")
    sha = _zip_folder(src, server.root / "ml-100k.zip")
    monkeypatch.setitem(datasets.SHA256, "100k", sha)
    return server


# --------------------------------------------------------------------------- real 100k
def test_100k_counts_and_values(data_home):
    ds = load_movielens("100k", data_home=data_home, download_if_missing=False)
    raw = _read_tab(data_home / "ml-100k" / "u.data")
    assert sp.isspmatrix_csr(ds.X) and ds.X.dtype == np.float32
    assert ds.X.shape == (943, 1682) and ds.X.nnz == 100000 == len(raw)
    np.testing.assert_array_equal(ds.user_ids, np.arange(1, 944))
    np.testing.assert_array_equal(ds.item_ids, np.arange(1, 1683))
    rows = np.array([ds.user_index[u] for u in raw[:50, 0]])
    cols = np.array([ds.item_index[i] for i in raw[:50, 1]])
    np.testing.assert_array_equal(ds.X[rows, cols].A1, raw[:50, 2])
    np.testing.assert_array_equal(np.sort(ds.X.data), np.sort(raw[:, 2]))
    # the ratings table: indices into X, file order, timestamps as in u.data
    r = ds.ratings
    assert list(r.columns) == ["user", "item", "rating", "timestamp"] and len(r) == 100000
    np.testing.assert_array_equal(ds.user_ids[r.user], raw[:, 0])
    np.testing.assert_array_equal(ds.item_ids[r.item], raw[:, 1])
    np.testing.assert_array_equal(r.timestamp, raw[:, 3])


def test_100k_items_table(data_home):
    ds = load_movielens("100k", data_home=data_home)
    it = ds.items
    assert isinstance(it, pd.DataFrame) and list(it.columns) == ["id", "title", "genres"]
    np.testing.assert_array_equal(it.id, ds.item_ids)
    # line 1 of u.item: flags 3, 4, 5 set (Animation, Children's, Comedy)
    assert it.title[0] == "Toy Story (1995)"
    assert it.genres[0] == "Animation|Children's|Comedy"
    assert it.genres[1] == "Action|Adventure|Thriller"  # GoldenEye
    # ds.items is the table even though a Bunch is a dict; dict.items still works
    assert dict(dict.items(ds))["items"] is it
    back = pickle.loads(pickle.dumps(ds))
    assert back.items.equals(it) and (back.X != ds.X).nnz == 0


@pytest.mark.parametrize("fold", ["u1", "u2", "u3", "u4", "u5", "ua", "ub"])
def test_100k_official_folds(data_home, fold):
    ds = load_movielens("100k", fold=fold, data_home=data_home)
    base = _read_tab(data_home / "ml-100k" / f"{fold}.base")
    test = _read_tab(data_home / "ml-100k" / f"{fold}.test")
    assert ds.X_train.shape == ds.X_test.shape == ds.X.shape == (943, 1682)
    assert (ds.X_train.nnz, ds.X_test.nnz) == (len(base), len(test))
    assert ds.X_train.multiply(ds.X_test).nnz == 0  # disjoint
    assert (ds.X_train + ds.X_test != ds.X).nnz == 0  # together: all ratings
    assert ds.fold == fold
    i = len(test) // 2
    assert ds.X_test[ds.user_index[test[i, 0]], ds.item_index[test[i, 1]]] == test[i, 2]


def test_latest_small_counts_and_values(data_home):
    ds = load_movielens("latest-small", data_home=data_home)
    with open(data_home / "ml-latest-small" / "ratings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert ds.X.shape == (610, 9724) and ds.X.nnz == 100836 == len(rows)
    for row in rows[::5000]:
        u, i = ds.user_index[int(row["userId"])], ds.item_index[int(row["movieId"])]
        assert ds.X[u, i] == np.float32(row["rating"])
    assert set(np.unique(ds.X.data)) == {0.5 * k for k in range(1, 11)}
    it = ds.items
    assert len(it) == 9724 and (it.id.to_numpy() == ds.item_ids).all()
    # a quoted title with a comma, and the genres as in movies.csv
    row = it[it.id == 11].iloc[0]
    assert row.title == "American President, The (1995)"
    assert row.genres == "Comedy|Drama|Romance"
    assert ds.ratings.timestamp.dtype == np.int64 and len(ds.ratings) == 100836


def test_name_and_fold_errors(data_home):
    with pytest.raises(ValueError, match="name='200k'"):
        load_movielens("200k", data_home=data_home)
    with pytest.raises(ValueError, match="fold='u9'"):
        load_movielens("100k", fold="u9", data_home=data_home)
    with pytest.raises(ValueError, match="only for '100k'"):
        load_movielens("latest-small", fold="u1", data_home=data_home)
    assert load_movielens("ml-100k", data_home=data_home).X.shape == (943, 1682)


# --------------------------------------------------------------------------- data home
def test_data_home_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SKSVD_DATA_HOME", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home() == tmp_path / "env"
    monkeypatch.setenv("SKSVD_DATA_HOME", "  ")  # blank: not set
    monkeypatch.setattr(datasets, "_CHECKOUT_DATA", tmp_path / "checkout" / "shared" / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == tmp_path / "home" / "sksvd_data"  # no shared/data folder
    (tmp_path / "checkout" / "shared" / "data").mkdir(parents=True)
    assert get_data_home() == tmp_path / "checkout" / "shared" / "data"
    monkeypatch.delenv("SKSVD_DATA_HOME")
    assert get_data_home() == tmp_path / "checkout" / "shared" / "data"


def test_cli_data_home_is_the_datasets_rule(tmp_path, monkeypatch):
    from sksvd.cli import find_data_home

    monkeypatch.delenv("SKSVD_DATA_HOME", raising=False)
    assert find_data_home() == get_data_home()
    monkeypatch.setenv("SKSVD_DATA_HOME", str(tmp_path))
    assert find_data_home() == get_data_home() == tmp_path


def test_env_data_home_is_used(tmp_path, monkeypatch):
    _fake_100k(tmp_path / "ml-100k")
    monkeypatch.setenv("SKSVD_DATA_HOME", str(tmp_path))
    assert load_movielens("100k", download_if_missing=False).X.shape == (3, 4)


def test_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="ml-1m"):
        load_movielens("1m", data_home=tmp_path, download_if_missing=False)
    assert list(tmp_path.iterdir()) == []


def test_incomplete_folder_is_not_overwritten(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "mine.txt").write_text("keep")
    with pytest.raises(FileNotFoundError, match="u.data"):
        load_movielens("100k", data_home=tmp_path)
    assert (tmp_path / "ml-100k" / "mine.txt").read_text() == "keep"


# --------------------------------------------------------------------------- tiny releases
def test_fake_100k_by_hand(tmp_path):
    _fake_100k(tmp_path / "ml-100k")
    ds = load_movielens("100k", fold="u1", data_home=tmp_path)
    expected = np.array([[5, 3, 0, 0], [4, 0, 1, 0], [0, 5, 0, 2]], dtype=np.float32)
    np.testing.assert_array_equal(ds.X.toarray(), expected)
    np.testing.assert_array_equal(ds.item_ids, [10, 20, 30, 40])
    assert ds.items.title.tolist()[1] == "Café, The (1990)"  # latin-1 decoded
    assert ds.items.genres.tolist() == ["Action", "Adventure", "Animation", "Children's"]
    np.testing.assert_array_equal((ds.X_train + ds.X_test).toarray(), expected)
    assert ds.X_test.nnz == 2 and ds.X_test.shape == (3, 4)


def test_bad_item_line_warns_and_keeps_title(tmp_path):
    folder = _fake_100k(tmp_path / "ml-100k")
    lines = (folder / "u.item").read_text(encoding="latin-1").splitlines(keepends=True)
    lines[2] = "30|Heat (1995)|a||b|" + "|".join(["0"] * 20) + "\n"  # 25 fields
    (folder / "u.item").write_text("".join(lines), encoding="latin-1")
    with pytest.warns(UserWarning, match=r"u\.item: line\(s\) 3"):
        ds = load_movielens("100k", data_home=tmp_path)
    assert ds.items.title[2] == "Heat (1995)" and ds.items.genres[2] == ""


@pytest.mark.parametrize(
    "content, match",
    [
        ("1\t10\t5\t881250949\n1\t20\t3\n", r"u\.data: column 'timestamp', line 2: missing"),
        ("1\t10\t5\t881250949\n1\t2", r"u\.data: column 'rating', line 2: missing"),
        ("1\t10\tfive\t881250949\n", r"u\.data: column 'rating', line 1: rating 'five'"),
        ("1\t10\t5\t881250949\n1\t20\t3\t8\t9\n", r"u\.data: malformed file"),
        ("1.5\t10\t5\t881250949\n", r"u\.data: column 'user', line 1: user id 1.5"),
        ("", r"u\.data: empty file"),
        ("1\t10\t5\t881250949\n1\t10\t4\t881250950\n", r"u\.data: user 1 rated item 10"),
    ],
)
def test_malformed_ratings_file_names_it(tmp_path, content, match):
    folder = _fake_100k(tmp_path / "ml-100k", info=False)
    (folder / "u.data").write_text(content)
    with pytest.raises(ValueError, match=match):
        load_movielens("100k", data_home=tmp_path)


def test_file_cut_at_a_line_boundary_is_caught_by_u_info(tmp_path):
    folder = _fake_100k(tmp_path / "ml-100k")
    lines = (folder / "u.data").read_text().splitlines(keepends=True)
    (folder / "u.data").write_text("".join(lines[:-1]))
    with pytest.raises(ValueError, match=r"u\.data: holds 5 ratings but u\.info states 6"):
        load_movielens("100k", data_home=tmp_path)


def test_fold_with_unknown_id(tmp_path):
    folder = _fake_100k(tmp_path / "ml-100k")
    (folder / "u1.test").write_text("9\t10\t5\t881250949\n")
    with pytest.raises(ValueError, match=r"u1\.test: line 1: user id 9 is not in u\.data"):
        load_movielens("100k", fold="u1", data_home=tmp_path)


def _write_release(folder, files):
    """A release folder holding ``files`` (name -> bytes)."""
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("name, folder", [("1m", "ml-1m"), ("10m", "ml-10M100K")])
def test_dat_releases(tmp_path, name, folder):
    d = _write_release(tmp_path / folder, {
        "ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4.5::978298413\n",
        "movies.dat": "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                      "1193::One Flew Over the Cuckoo's Nest: Café (1975)::Drama\n"
                      "5::Unrated (1990)::Comedy\n".encode("latin-1")})
    ds = load_movielens(name, data_home=tmp_path)
    np.testing.assert_array_equal(ds.X.toarray(), [[3, 5], [0, 4.5]])
    np.testing.assert_array_equal(ds.item_ids, [661, 1193])
    assert ds.items.title.tolist()[1] == "One Flew Over the Cuckoo's Nest: Café (1975)"
    assert ds.items.genres.tolist()[0] == "Animation|Children's|Musical"
    (d / "ratings.dat").write_text("1::1193::5::978300760\n1::661\n")
    with pytest.raises(ValueError, match=r"ratings\.dat: column 'rating', line 2"):
        load_movielens(name, data_home=tmp_path)


@pytest.mark.parametrize("name, folder", [("20m", "ml-20m"), ("25m", "ml-25m")])
def test_csv_releases(tmp_path, name, folder):
    d = _write_release(tmp_path / folder, {
        "ratings.csv": b"userId,movieId,rating,timestamp\n"
                       b"7,2,3.5,1112486027\n7,29,4.0,1112484676\n9,2,1.0,1\n",
        "movies.csv": b'movieId,title,genres\n2,"Jumanji, The (1995)",Adventure|Children\n'
                      b"29,Heat (1995),(no genres listed)\n"})
    ds = load_movielens(name, data_home=tmp_path)
    np.testing.assert_array_equal(ds.X.toarray(), [[3.5, 4.0], [1.0, 0]])
    assert ds.items.title.tolist() == ["Jumanji, The (1995)", "Heat (1995)"]
    np.testing.assert_array_equal(ds.ratings.timestamp, [1112486027, 1112484676, 1])
    (d / "ratings.csv").write_text("userId,movieId,stars,timestamp\n7,2,3.5,1\n")
    with pytest.raises(ValueError, match=r"ratings\.csv: malformed file, no column 'rating'"):
        load_movielens(name, data_home=tmp_path)


# --------------------------------------------------------------------------- download
def test_download_then_load(tmp_path, served_100k):
    home = tmp_path / "home"
    ds = load_movielens("100k", fold="u1", data_home=home)
    assert ds.X.shape == (3, 4) and ds.X.nnz == 6 and ds.X_test.nnz == 2
    assert sorted(p.name for p in home.iterdir()) == ["ml-100k"]  # no temp files left
    assert (home / "ml-100k" / "u.data").is_file()
    # second call reads the local copy: the server is no longer needed
    (served_100k.root / "ml-100k.zip").unlink()
    assert load_movielens("100k", data_home=home).X.nnz == 6


def test_download_goes_through_pooch_with_the_sha256(tmp_path, served_100k, monkeypatch):
    import pooch

    calls = []
    real = pooch.retrieve

    def spy(url, known_hash, **kw):
        calls.append((url, known_hash))
        return real(url, known_hash, **kw)

    monkeypatch.setattr(pooch, "retrieve", spy)
    load_movielens("100k", data_home=tmp_path / "home")
    assert calls == [(datasets.BASE_URL + "ml-100k.zip", "sha256:" + datasets.SHA256["100k"])]


def test_download_without_known_checksum(tmp_path, served_100k, monkeypatch):
    monkeypatch.setitem(datasets.SHA256, "100k", None)
    assert load_movielens("100k", data_home=tmp_path / "home").X.nnz == 6


def test_download_bad_checksum_leaves_nothing(tmp_path, served_100k, monkeypatch):
    monkeypatch.setitem(datasets.SHA256, "100k", "0" * 64)
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        load_movielens("100k", data_home=home)
    assert list(home.iterdir()) == []


def test_download_truncated_zip_leaves_nothing(tmp_path, served_100k, monkeypatch):
    z = served_100k.root / "ml-100k.zip"
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    monkeypatch.setitem(datasets.SHA256, "100k", None)  # only the zip itself can tell
    home = tmp_path / "home"
    with pytest.raises(ValueError, match=r"ml-100k\.zip: not a valid zip archive"):
        load_movielens("100k", data_home=home)
    assert list(home.iterdir()) == []


def test_download_cut_short_leaves_nothing(tmp_path, served_100k):
    served_100k.cut_to = 100  # Content-Length says more than is sent
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="truncated"):
        load_movielens("100k", data_home=home)
    assert list(home.iterdir()) == []


def test_download_malformed_release_leaves_nothing(tmp_path, server, monkeypatch):
    src = _fake_100k(tmp_path / "build" / "ml-100k", info=False)
    (src / "u.data").write_text("1\t10\t5\t881250949\n1\t20\n")
    sha = _zip_folder(src, server.root / "ml-100k.zip")
    monkeypatch.setitem(datasets.SHA256, "100k", sha)
    home = tmp_path / "home"
    with pytest.raises(ValueError, match=r"u\.data: column 'rating', line 2"):
        load_movielens("100k", data_home=home)
    assert list(home.iterdir()) == []


def test_download_unsafe_member_refused(tmp_path, server, monkeypatch):
    z = server.root / "ml-100k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t1\t1\n")
        zf.writestr("../evil.txt", "x")
    monkeypatch.setitem(datasets.SHA256, "100k", None)
    home = tmp_path / "home"
    with pytest.raises(ValueError, match="unsafe member path"):
        load_movielens("100k", data_home=home)
    assert list(home.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_download_http_error(tmp_path, server):
    with pytest.raises(OSError, match=r"ml-1m\.zip: download failed"):
        load_movielens("1m", data_home=tmp_path / "home")
    assert list((tmp_path / "home").iterdir()) == []


# --------------------------------------------------------------------------- load_ratings
@pytest.fixture
def table():
    return pd.DataFrame({"userId": [10, 10, 30, 20], "movieId": [7, 5, 7, 5],
                         "rating": [4.0, 5.0, 3.5, 1.0], "ts": [3, 1, 2, 4]})


def test_load_ratings_dataframe(table):
    before = table.copy()
    ds = load_ratings(table, timestamp_col="ts")
    np.testing.assert_array_equal(ds.X.toarray(), [[5, 4], [1, 0], [0, 3.5]])
    np.testing.assert_array_equal(ds.user_ids, [10, 20, 30])
    np.testing.assert_array_equal(ds.item_ids, [5, 7])
    assert ds.user_index == {10: 0, 20: 1, 30: 2} and ds.item_index == {5: 0, 7: 1}
    np.testing.assert_array_equal(ds.ratings.timestamp, [3, 1, 2, 4])
    np.testing.assert_array_equal(ds.user_ids[ds.ratings.user], table.userId)
    pd.testing.assert_frame_equal(table, before)  # caller's frame untouched


def test_load_ratings_csv_and_separators(tmp_path, table):
    for sep in (",", "\t", ";", "::"):
        p = tmp_path / "r.txt"
        p.write_text(sep.join(table.columns) + "\n"
                     + "".join(sep.join(map(str, r)) + "\n" for r in table.itertuples(False)))
        ds = load_ratings(p, sep=sep)
        np.testing.assert_array_equal(ds.X.toarray(), [[5, 4], [1, 0], [0, 3.5]])
    buf = io.StringIO("u,i\nann,x\nbob,y\nann,y\n")
    ds = load_ratings(buf, user_col="u", item_col="i", rating_col=None)
    np.testing.assert_array_equal(ds.X.toarray(), [[1, 1], [0, 1]])
    assert ds.user_ids.tolist() == ["ann", "bob"] and ds.item_index["y"] == 1


def test_load_ratings_errors_name_the_column(tmp_path, table):
    with pytest.raises(ValueError, match=r"no column 'itemId' \(item_col\)"):
        load_ratings(table, item_col="itemId")
    with pytest.raises(ValueError, match=r"no column 'when' \(timestamp_col\)"):
        load_ratings(table, timestamp_col="when")
    t = table.astype({"userId": float})
    t.loc[2, "userId"] = np.nan
    with pytest.raises(ValueError, match=r"column 'userId', row 2: missing id"):
        load_ratings(t)
    t = table.astype({"rating": object})
    t.loc[1, "rating"] = "good"
    with pytest.raises(ValueError, match=r"column 'rating', row 1: rating 'good' is not a fin"):
        load_ratings(t)
    t = table.astype({"rating": "Float64"})  # nullable: pd.NA, not NaN
    t.loc[0, "rating"] = pd.NA
    with pytest.raises(ValueError, match=r"column 'rating', row 0: missing rating"):
        load_ratings(t)
    t = table.copy()
    t.loc[3, "rating"] = np.inf
    with pytest.raises(ValueError, match=r"column 'rating', row 3"):
        load_ratings(t)
    p = tmp_path / "r.csv"
    p.write_text("userId,movieId,rating\n1,2,3\n,4,5\n")
    with pytest.raises(ValueError, match=r"r\.csv: column 'userId', line 3: missing id"):
        load_ratings(p)
    with pytest.raises(ValueError, match="duplicates='max'"):
        load_ratings(table, duplicates="max")
    with pytest.raises(ValueError, match="DataFrame: no rows"):
        load_ratings(table.iloc[:0])


def test_load_ratings_duplicates(table):
    t = pd.concat([table, pd.DataFrame({"userId": [10], "movieId": [7], "rating": [2.0],
                                        "ts": [0]})], ignore_index=True)
    with pytest.raises(ValueError, match="user 10 rated item 7 more than once"):
        load_ratings(t)
    assert load_ratings(t, duplicates="sum").X[0, 1] == 6.0
    assert load_ratings(t, duplicates="last").X[0, 1] == 2.0  # last row
    assert load_ratings(t, timestamp_col="ts", duplicates="last").X[0, 1] == 4.0  # latest ts


# --------------------------------------------------------------------------- id layer
def test_items_is_the_table_and_items_call_the_dict_view(ml100k):
    # ds.items is the item table; ds.items() the dict's items, as on any dict
    assert isinstance(ml100k.items, pd.DataFrame) and ml100k.items.title[0] == "Toy Story (1995)"
    keys = [k for k, _ in ml100k.items()]
    assert keys == list(dict.keys(ml100k)) and "X" in keys and "items" in keys
    assert dict(ml100k.items())["items"] is ml100k.items is ml100k["items"]
    # derived frames are plain DataFrames; a Bunch without a table keeps the dict method
    assert type(ml100k.items.head()) is pd.DataFrame
    plain = load_ratings(pd.DataFrame({"userId": [1], "movieId": [2], "rating": [3.0]}))
    assert dict(plain.items())["X"] is plain.X and "items" not in plain
    back = pickle.loads(pickle.dumps(ml100k))
    assert [k for k, _ in back.items()] == keys and back.items.equals(ml100k.items)


def test_items_call_on_a_bunch_nobody_else_holds(tmp_path):
    (tmp_path / "items.csv").write_text("id,title\n10,Ten\n20,Twenty\n")
    table = pd.DataFrame({"userId": [1, 2], "movieId": [10, 20], "rating": [5.0, 3.0]})
    keys = [k for k, _ in load_ratings(table, items=tmp_path / "items.csv").items()]
    assert "X" in keys and "items" in keys
    ds = load_ratings(table, items=tmp_path / "items.csv")
    t = ds.items
    del ds
    assert dict(t())["items"] is t  # the table keeps its Bunch


def test_id_layer_maps_raw_ids_both_ways(ml100k, data_home):
    raw = pd.read_csv(data_home / "ml-100k" / "u.data", sep="\t", header=None,
                      names=["user", "item", "rating", "ts"])
    row = raw.iloc[1234]
    u, i = ml100k.user_rows(int(row["user"])), ml100k.item_columns(int(row["item"]))
    assert isinstance(u, int) and ml100k.X[u, i] == row["rating"]
    cols = ml100k.item_columns([50, 172, 181])
    np.testing.assert_array_equal(ml100k.item_ids[cols], [50, 172, 181])
    np.testing.assert_array_equal(ml100k.user_rows(np.array([1, 943])), [0, 942])
    with pytest.raises(KeyError, match="user id 944 is not in the data"):
        ml100k.user_rows([1, 944])
    with pytest.raises(KeyError, match="item id 'Star Wars' is not in the data"):
        ml100k.item_columns("Star Wars")
    assert ml100k.items.title[ml100k.find_items("star wars")[0]] == "Star Wars (1977)"
    assert ml100k.find_items("no such title ever").size == 0
    x = ml100k.make_row({50: 5, 181: 4})
    assert x.shape == (1, 1682) and x[0, ml100k.item_columns(181)] == 4
    with pytest.raises(KeyError, match="item id 99999"):
        ml100k.make_row({99999: 5})


def test_to_frame_gives_raw_ids_and_titles(ml100k, data_home):
    titles = pd.read_csv(data_home / "ml-100k" / "u.item", sep="|", header=None,
                         encoding="latin-1", usecols=[0, 1], names=["id", "title"])
    titles = dict(zip(titles.id, titles.title, strict=True))
    ids = np.array([[ml100k.item_columns(181), ml100k.item_columns(172), -1],
                    [0, 1, 2]])
    frame = ml100k.to_frame(ids, np.array([[0.9, 0.8, -np.inf], [3, 2, 1]]), users=[196, 1])
    assert list(frame.columns) == ["user_id", "rank", "item_id", "title", "genres", "score"]
    assert frame.user_id.tolist() == [196, 196, 1, 1, 1]  # padding left out
    assert frame["rank"].tolist() == [1, 2, 1, 2, 3]
    assert frame.item_id.tolist() == [181, 172, 1, 2, 3]
    assert frame.title.tolist() == [titles[i] for i in frame.item_id]
    assert frame.score.tolist() == [0.9, 0.8, 3, 2, 1]
    with pytest.raises(ValueError, match="scores: expected shape"):
        ml100k.to_frame(ids, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="users: expected 2 ids"):
        ml100k.to_frame(ids, users=[1])


def test_load_ratings_guesses_columns_and_reads_titles(tmp_path, data_home):
    folder = data_home / "ml-latest-small"
    ds = load_ratings(folder / "ratings.csv", items=folder / "movies.csv")
    movies = pd.read_csv(folder / "movies.csv")
    title = dict(zip(movies.movieId, movies.title, strict=True))
    assert ds.X.shape == (610, 9724)
    assert ds.items.title[ds.item_columns(260)] == title[260]
    assert (ds.items.id.to_numpy() == ds.item_ids).all()
    # other column names, guessed when the defaults are absent
    p = tmp_path / "r.csv"
    p.write_text("User_ID,Item_ID,Score\n7,b,4\n7,a,2\n9,b,5\n")
    g = load_ratings(p)
    np.testing.assert_array_equal(g.X.toarray(), [[2, 4], [0, 5]])
    p.write_text("customer,product\n7,b\n9,a\n")  # no rating column: implicit
    np.testing.assert_array_equal(load_ratings(p).X.toarray(), [[0, 1], [1, 0]])
    # a file without a header line, as u.data
    u = load_ratings(data_home / "ml-100k" / "u.data", sep="\t")
    assert u.X.shape == (943, 1682) and u.X.nnz == 100000
    # names given explicitly are never guessed
    with pytest.raises(ValueError, match=r"no column 'who' \(user_col\)"):
        load_ratings(p, user_col="who")
    with pytest.raises(ValueError, match="items=.*'title' column"):
        load_ratings(folder / "ratings.csv", items=pd.DataFrame({"movieId": [1]}))
