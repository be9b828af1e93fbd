"""The installed ``sksvd`` console script, run in a subprocess: exit codes and output.

References are independent of the command: the reconstructed PNG is read
back with Pillow and its PSNR recomputed with scikit-image; titles and a
user's ratings are read from MovieLens' own files with pandas.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# One intra-op thread per subprocess: these tests check behaviour, not speed, and on a
# busy machine torch's OpenMP threads spin against the other processes' threads.
_ONE_THREAD = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

PIL = pytest.importorskip("PIL.Image")
from skimage.metrics import peak_signal_noise_ratio  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "sksvd"
if not SCRIPT.exists():
    SCRIPT = Path(shutil.which("sksvd") or SCRIPT)

pytestmark = pytest.mark.skipif(not SCRIPT.exists(),
                                reason="the sksvd console script is not installed")

STAR_WARS = {50: 5, 172: 5, 181: 4}


def run(*args, env=None, timeout=120, cwd=None):
    full_env = {**os.environ, "SKSVD_DEVICE": os.environ.get("SKSVD_DEVICE", "cpu"),
                **_ONE_THREAD,
                **(env or {})}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


def error_line(proc):
    """The one line a usage error prints (warnings about the data aside)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln and ": warning: " not in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- help and usage
def test_help_lists_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("compress", "recommend", "evaluate", "bench"):
        assert cmd in proc.stdout
    assert run("--version").stdout.startswith("sksvd ")


@pytest.mark.parametrize("cmd", ["compress", "recommend", "evaluate", "bench"])
def test_subcommand_help_has_example_device_verbose(cmd):
    proc = run(cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout and f"sksvd {cmd}" in proc.stdout
    assert "--device" in proc.stdout and "--verbose" in proc.stdout


@pytest.mark.parametrize("args, named", [
    (["compress", "img.png", "--rank", "0"], "--rank"),
    (["compress", "img.png", "--rank", "x"], "--rank"),
    (["compress", "img.png", "--energy", "1.5"], "--energy"),
    (["compress", "img.png"], "--rank"),
    (["compress", "img.png", "--rank", "3", "--psnr", "30"], "--psnr"),
    (["compress", "no_such_image.png", "--rank", "3"], "IMAGE"),
    (["compress", "img.png", "--rank", "3", "--device", "gpu"], "--device"),
    (["compress", "img.png", "--rank", "3", "--bogus"], "--bogus"),
    (["recommend", "--model", "svd", "--user", "1"], "--model"),
    (["recommend", "--model", "puresvd"], "--user"),
    (["recommend", "--user", "1", "-k", "0"], "-k"),
    (["evaluate", "--models", "puresvd,nope"], "--models"),
    (["evaluate", "--metrics", "auc"], "--metrics"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_bad_usage_exits_2_with_one_line_naming_the_argument(args, named):
    proc = run(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = error_line(proc)
    assert "error" in line and named in line
    assert proc.stdout == ""


# --------------------------------------------------------------------------- compress
@pytest.fixture(scope="module")
def png(tmp_path_factory):
    from sklearn.datasets import load_sample_image

    img = load_sample_image("china.jpg")[::4, ::4]  # 107 x 160 x 3
    path = tmp_path_factory.mktemp("img") / "china_small.png"
    PIL.fromarray(np.ascontiguousarray(img)).save(path)
    return path, np.ascontiguousarray(img)


def test_compress_writes_png_and_reports_psnr_and_size(png, tmp_path):
    path, img = png
    out, plot = tmp_path / "out.png", tmp_path / "profile.png"
    proc = run("compress", path, "--rank", 12, "-o", out, "--plot", plot, "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    recon = np.asarray(PIL.open(out))
    assert recon.shape == img.shape and recon.dtype == np.uint8
    assert res["rank"] == 12
    assert res["psnr_db"] == pytest.approx(peak_signal_noise_ratio(img, recon), abs=1e-6)
    h, w, c = img.shape
    # uint8 factors (the default): one byte per number, a float32 scale and offset
    # per component of each factor.
    assert res["factor_dtype"] == "uint8"
    assert res["factor_bytes"] == 12 * (h + w * c) + 16 * 12
    assert res["raw_bytes"] == img.nbytes
    assert res["compression_ratio"] == pytest.approx(img.nbytes / res["factor_bytes"])
    with PIL.open(plot) as fig:
        assert fig.size[0] > 300 and fig.size[1] > 200

    text = run("compress", path, "--psnr", 30, "--no-jpeg")
    assert text.returncode == 0, text.stderr
    assert "PSNR" in text.stdout and "bytes" in text.stdout
    psnr_line = next(ln for ln in text.stdout.splitlines() if "PSNR" in ln)
    assert float(psnr_line.split()[1]) >= 29.9  # the target, up to rounding to uint8


def test_compress_energy_matches_numpy_spectrum(png):
    path, img = png
    proc = run("compress", path, "--energy", 0.99, "--no-jpeg", "--json")
    assert proc.returncode == 0, proc.stderr
    s = np.linalg.svd(img.reshape(img.shape[0], -1).astype(float), compute_uv=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    expected = int(np.searchsorted(share, 0.99) + 1)
    assert json.loads(proc.stdout)["rank"] == expected


def test_compress_rank_too_large_is_usage_error(png):
    proc = run("compress", png[0], "--rank", 5000)
    assert proc.returncode == 2
    assert "--rank 5000" in error_line(proc)


# --------------------------------------------------------------------------- recommend / evaluate
@pytest.fixture(scope="module")
def ml_files(data_home):
    folder = data_home / "ml-100k"
    items = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1",
                        usecols=[0, 1], names=["id", "title"])
    ratings = pd.read_csv(folder / "u.data", sep="\t", header=None,
                          names=["user", "item", "rating", "ts"])
    return dict(zip(items.id, items.title, strict=True)), ratings


def test_recommend_new_user_prints_ten_unrated_titles(data_home, ml_files):
    titles, _ = ml_files
    rated = ",".join(f"{i}:{r}" for i, r in STAR_WARS.items())
    proc = run("recommend", "--data", "ml-100k", "--model", "asysvd", "--rated", rated,
               "-k", 10, "--components", 8, "--epochs", 2,
               env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr
    # Table rows: "rank  id  title  predicted rating".
    rows = [ln.split(None, 2) for ln in proc.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    ids = [int(r[1]) for r in rows]
    assert len(set(ids)) == 10 and not set(ids) & set(STAR_WARS)
    for (_, _, rest), i in zip(rows, ids, strict=True):
        assert rest.startswith(titles[i])
    for i in STAR_WARS:  # the header names what the user rated
        assert titles[i] in proc.stdout.splitlines()[0]


def test_recommend_fitted_user_excludes_their_ratings(data_home, ml_files):
    _, ratings = ml_files
    proc = run("recommend", "--model", "puresvd", "--user", 196, "-k", 20, "--components", 20,
               "--json", env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr
    ids = {r["item_id"] for r in json.loads(proc.stdout)["recommendations"]}
    assert len(ids) == 20
    assert not ids & set(ratings.item[ratings.user == 196])


@pytest.mark.parametrize("args, named", [
    (["--rated", "99999:5"], "--rated"),
    (["--rated", "50:5,172"], "--rated"),
    (["--user", "0"], "--user"),
    (["--rated", "50:5", "--components", "5000"], "--components"),
])
def test_recommend_bad_values_exit_2(data_home, args, named):
    proc = run("recommend", "--model", "puresvd", *args,
               env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 2
    assert named in error_line(proc)


def test_recommend_missing_data_without_download_exits_2(tmp_path):
    proc = run("recommend", "--user", 1, "--no-download", "--data-home", tmp_path)
    assert proc.returncode == 2
    assert "--data" in error_line(proc)


def test_evaluate_uses_the_library_metrics(data_home):
    import torch

    from sksvd import FunkSVD, SVDRecommender
    from sksvd.datasets import load_movielens
    from sksvd.model_selection import evaluate

    # FunkSVD trained on the ratings (loss="mse", where the class has a loss parameter).
    has_loss = "loss" in FunkSVD().get_params()
    proc = run("evaluate", "--models", "puresvd,funksvd", "--metrics", "ndcg,recall,rmse",
               "--folds", "u1,u2", "--components", 8, "--epochs", 2, "--json",
               *(["--loss", "mse"] if has_loss else []),
               env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["folds"] == ["u1", "u2"]
    ds = load_movielens("100k", fold="u1", data_home=data_home)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (see _ONE_THREAD)
    try:
        pure = evaluate(SVDRecommender(8, random_state=0, device="cpu"), ds.X_train,
                        ds.X_test, metrics=("ndcg", "recall"))
        funk = FunkSVD(8, n_epochs=2, early_stopping=True, random_state=0, device="cpu",
                       **({"loss": "mse"} if has_loss else {}))
        ref = evaluate(funk, ds.X_train, ds.X_test, metrics=("rmse",))
    finally:
        torch.set_num_threads(threads)
    u1 = res["models"]["SVDRecommender"]["per_fold"][0]
    assert u1["ndcg"] == pytest.approx(pure["ndcg"], abs=1e-4)
    assert u1["recall"] == pytest.approx(pure["recall"], abs=1e-4)
    assert "rmse" not in u1  # PureSVD's scores are not ratings
    assert res["models"]["SVDRecommender"]["mean"]["rmse"] is None
    assert res["models"]["FunkSVD"]["per_fold"][0]["rmse"] == pytest.approx(ref["rmse"],
                                                                            abs=1e-4)
    mean = res["models"]["FunkSVD"]["mean"]["rmse"]
    per_fold = [f["rmse"] for f in res["models"]["FunkSVD"]["per_fold"]]
    assert mean == pytest.approx(np.mean(per_fold))


# --------------------------------------------------------------------------- bench
def test_bench_without_the_benchmarks_folder_says_so(tmp_path):
    # A copy of the package alone on PYTHONPATH, as in an installed wheel.
    shutil.copytree(ROOT / "sksvd", tmp_path / "sksvd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = run("bench", "--quick", env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "benchmarks/" in error_line(proc) and "make bench" in error_line(proc)


@pytest.mark.skipif(not (ROOT / "benchmarks" / "run.py").exists(),
                    reason="benchmarks/run.py not present")
def test_bench_passes_arguments_to_the_suite():
    proc = run("bench", "--", "--help", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


# --------------------------------------------------------------------------- any ratings CSV
@pytest.fixture(scope="module")
def small_files(data_home):
    folder = data_home / "ml-latest-small"
    if not (folder / "ratings.csv").exists():
        pytest.skip("ml-latest-small not found")
    movies = pd.read_csv(folder / "movies.csv")
    return folder, dict(zip(movies.movieId, movies.title, strict=True)), \
        pd.read_csv(folder / "ratings.csv")


def test_ratings_csv_recommend_evaluate_similar_print_titles(small_files):
    folder, titles, ratings = small_files
    csv = folder / "ratings.csv"
    proc = run("recommend", "--data", csv, "--rated", "260:5,1196:5", "--components", 20)
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split(None, 2) for ln in proc.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    for _, item, rest in rows:
        assert rest.startswith(titles[int(item)])
    assert titles[260] in proc.stdout.splitlines()[0]

    proc = run("recommend", "--data", csv, "--user", 1, "-k", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    recs = json.loads(proc.stdout)["recommendations"]
    assert [r["title"] for r in recs] == [titles[r["item_id"]] for r in recs]
    assert not {r["item_id"] for r in recs} & set(ratings.movieId[ratings.userId == 1])

    proc = run("similar", "--data", csv, "--item", "Star Wars", "-k", 5, "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["item"]["item_id"] == 260  # the most rated "Star Wars" title
    assert [r["title"] for r in res["similar"]] == [titles[r["item_id"]]
                                                   for r in res["similar"]]
    assert 260 not in {r["item_id"] for r in res["similar"]}

    proc = run("evaluate", "--data", csv, "--models", "puresvd", "--metrics", "ndcg,recall",
               "--components", 10)
    assert proc.returncode == 0, proc.stderr
    assert "SVDRecommender" in proc.stdout and "ndcg@10" in proc.stdout


def test_similar_star_wars_on_ml100k_by_title(data_home):
    proc = run("similar", "--item", "Star Wars", "-k", 5, "--json",
               env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["item"]["item_id"] == 50
    assert len({r["item_id"] for r in res["similar"]} & {172, 181}) >= 1


def test_recommend_writes_the_list_and_reads_named_columns(tmp_path, data_home, ml_files):
    titles, ratings = ml_files
    src = tmp_path / "mine.tsv"  # other column names, tab-separated
    ratings.rename(columns={"user": "who", "item": "what", "rating": "stars"}).to_csv(
        src, sep="\t", index=False)
    out = tmp_path / "top.csv"
    proc = run("recommend", "--data", src, "--columns", "who,what,stars", "--user", 196,
               "-k", 5, "-o", out, "--components", 10)
    assert proc.returncode == 0, proc.stderr
    top = pd.read_csv(out)
    assert top["rank"].tolist() == [1, 2, 3, 4, 5] and len(set(top.item_id)) == 5
    assert not set(top.item_id) & set(ratings.item[ratings.user == 196])


@pytest.mark.parametrize("args, named", [
    (["recommend", "--ratd", "50:5"], "--ratd"),
    (["similar", "--item", "x", "--kk", "3"], "--kk"),
    (["recommend", "--user", "1", "-o", "/nonexistent/dir/x.csv"], "/nonexistent/dir"),
    (["similar", "--item", "1", "-o", "/nonexistent/dir/x.csv"], "/nonexistent/dir"),
    (["recommend", "--user", "1", "-o", "top.txt"], "--output"),
    (["recommend", "--data", "no_such.csv", "--user", "1"], "no_such.csv"),
    (["similar", "--item", "no title like this one"], "--item"),
    (["evaluate", "--models", "puresvd", "--loss", "mse"], "--loss"),
])
def test_usage_errors_name_the_option(data_home, args, named):
    proc = run(*args, env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = error_line(proc)
    assert "error" in line and named in line
    if args[1] == "--ratd":
        assert "--rated" in line and "required" not in line


def test_help_states_the_classes_defaults():
    import inspect

    from sksvd import AsySVD, FunkSVD, SVDRecommender

    text = " ".join(run("recommend", "--help").stdout.split())
    for cls in (FunkSVD, AsySVD):
        sig = inspect.signature(cls).parameters
        assert f"{cls.__name__} {sig['n_components'].default}" in text
        assert f"{cls.__name__} {sig['n_epochs'].default}" in text
        if "loss" in sig:
            options = sorted(next(c for c in cls._parameter_constraints["loss"]
                                  if hasattr(c, "options")).options)
            assert f"{cls.__name__} {{{','.join(options)}}}" in text
            assert f"{cls.__name__} {sig['loss'].default}" in text
    n_pure = inspect.signature(SVDRecommender).parameters["n_components"].default
    assert f"SVDRecommender {n_pure}" in text


def test_loss_and_shrinkage_reach_the_models(data_home):
    from sksvd import FunkSVD, SVDRecommender

    env = {"SKSVD_DATA_HOME": str(data_home)}
    if "loss" in FunkSVD().get_params():
        proc = run("recommend", "--model", "funksvd", "--loss", "mse", "--user", 1, "-k", 3,
                   "--epochs", 1, "--components", 4, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["params"]["loss"] == "mse"
        bad = run("recommend", "--model", "funksvd", "--loss", "hinge", "--user", 1, env=env)
        assert bad.returncode == 2 and "--loss 'hinge'" in error_line(bad)
    if "shrinkage" not in SVDRecommender().get_params():
        pytest.skip("SVDRecommender has no shrinkage parameter in this version")
    proc = run("recommend", "--shrinkage", 10, "--user", 1, "-k", 3, "--components", 8,
               "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"]["shrinkage"] == 10


# --------------------------------------------------------------------------- bench plumbing
def _run_module():
    sys.path.insert(0, str(ROOT))
    from benchmarks import run as bench_run

    return bench_run


@pytest.mark.skipif(not (ROOT / "benchmarks" / "run.py").exists(),
                    reason="benchmarks/run.py not present")
def test_bench_results_go_outside_the_source_tree(tmp_path, monkeypatch):
    bench_run = _run_module()
    monkeypatch.delenv("SKSVD_BENCH_OUT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for quick in (True, False):
        out = bench_run.default_out(quick).resolve()
        assert ROOT.resolve() not in out.parents
        assert out.parent == (tmp_path / "cache" / "sksvd" / "bench").resolve()
    monkeypatch.setenv("SKSVD_BENCH_OUT", str(tmp_path / "elsewhere"))
    assert bench_run.default_out(True) == tmp_path / "elsewhere" / "quick"


@pytest.mark.skipif(not (ROOT / "benchmarks" / "run.py").exists(),
                    reason="benchmarks/run.py not present")
def test_bench_missing_extras_stop_it_before_anything_runs(tmp_path, monkeypatch, capsys):
    bench_run = _run_module()
    real = bench_run.importlib.util.find_spec
    monkeypatch.setattr(bench_run.importlib.util, "find_spec",
                        lambda name, *a: None if name == "surprise" else real(name, *a))
    ran = []
    monkeypatch.setattr(bench_run, "run_one", lambda *a, **k: ran.append(a) or {})
    with pytest.raises(SystemExit) as exc:
        bench_run.main(["--quick", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and ran == []
    err = capsys.readouterr().err
    assert "scikit-surprise" in err and "rating" in err and "asysvd" in err
    assert not (tmp_path / "out").exists()  # nothing written either
    assert bench_run.missing_requirements(["compression", "memory"]) == {}


# --------------------------------------------------------------------------- in-process main
@pytest.fixture
def tiny_csv(tmp_path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating\n1,10,5\n1,20,3\n2,10,4\n2,30,2\n3,20,5\n3,30,1\n")
    (tmp_path / "movies.csv").write_text("movieId,title\n10,Ten\n20,Twenty\n30,Thirty\n")
    return tmp_path / "ratings.csv"


def test_main_restores_showwarning(tiny_csv, capsys):
    import warnings

    from sksvd.cli import main

    before = warnings.showwarning
    assert main(["recommend", "--data", str(tiny_csv), "--rated", "10:5", "-k", "1",
                 "--components", "1", "--device", "cpu"]) == 0
    assert warnings.showwarning is before
    assert main(["recommend", "--data", str(tiny_csv), "--user", "99", "-k", "1"]) == 2
    assert warnings.showwarning is before


def test_main_csv_with_titles_json_names_the_titles(tiny_csv, capsys):
    from sksvd.cli import main

    assert main(["recommend", "--data", str(tiny_csv), "--rated", "10:5", "-k", "2",
                 "--components", "1", "--device", "cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {r["title"] for r in res["recommendations"]} == {"Twenty", "Thirty"}


def test_main_usage_error_exits_2_runtime_failure_exits_1(tiny_csv, capsys, monkeypatch):
    from sksvd import cli
    from sksvd.recommenders import SVDRecommender

    assert cli.main(["recommend", "--data", str(tiny_csv), "--user", "99", "-k", "1"]) == 2
    assert "--user 99" in capsys.readouterr().err

    def broken_fit(self, X, y=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(SVDRecommender, "fit", broken_fit)
    assert cli.main(["recommend", "--data", str(tiny_csv), "--rated", "10:5", "-k", "1",
                     "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "failed: out of memory" in err and "error" not in err


@pytest.mark.parametrize("device", ["mps", "cuda", "cuda:3"])
def test_unavailable_device_refused_before_loading_data(device, tiny_csv, capsys,
                                                        monkeypatch):
    import torch

    from sksvd import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = []
    monkeypatch.setattr(cli, "_load_data", lambda *a, **k: loaded.append(a))
    assert cli.main(["recommend", "--data", str(tiny_csv), "--rated", "10:5",
                     "--device", device]) == 2
    err = capsys.readouterr().err
    assert "--device" in err and device in err and loaded == []
