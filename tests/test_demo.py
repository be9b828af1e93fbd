"""``python -m sksvd.demo`` in a subprocess: its figures open, its tables print.

The full demo (``make demo``) takes a minute or two; here its ``--quick``
smoke run (images at 1/4 size, small models, 2 epochs) goes through the
same code paths.
"""

import os
import subprocess
import sys

import pytest

# One intra-op thread per subprocess: these tests check behaviour, not speed, and on a
# busy machine torch's OpenMP threads spin against the other processes' threads.
_ONE_THREAD = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")


def run_demo(*args, env=None, timeout=240):
    full_env = {**os.environ, "SKSVD_DEVICE": os.environ.get("SKSVD_DEVICE", "cpu"),
                **_ONE_THREAD,
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "sksvd.demo", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def _check_png(path):
    with PIL.open(path) as im:
        im.load()
        assert im.size[0] >= 300 and im.size[1] >= 150
        # not a blank canvas
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 50


def test_demo_quick_runs_to_the_end(data_home, tmp_path):
    out = tmp_path / "demo_output"
    proc = run_demo("--quick", "--output", out, env={"SKSVD_DATA_HOME": str(data_home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("china_rank_profile.png", "china_reconstructions.png",
                 "flower_rank_profile.png", "flower_reconstructions.png",
                 "funksvd_training.png", "funksvd_als_training.png", "asysvd_training.png"):
        _check_png(out / name)
    text = proc.stdout
    assert "jpeg_dB_same_bytes" in text and "80% of sum s_i" in text
    for model in ("PureSVD", "FunkSVD", "AsySVD"):
        assert model in text
    assert "ndcg@10" in text and "rmse" in text
    assert "raw/size" in text  # compression ratio read raw / compressed
    # The defaults rank (no rating columns); FunkSVD(loss="mse") has RMSE and MAE.
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines()
            if ln.startswith(("PureSVD ", "FunkSVD ", "AsySVD ", "FunkSVD(loss='mse') "))}
    assert len(rows) == 4, rows
    for name in ("PureSVD", "FunkSVD", "AsySVD"):
        assert rows[name][4:6] == ["n/a", "n/a"], rows[name]
    assert 0.5 < float(rows["FunkSVD(loss='mse')"][4]) < 2.0
    assert "Star Wars (1977)" in text  # the new user's profile, by title
    table = text[text.index("a new user"):]
    assert sum(ln.strip()[:2].strip().isdigit() for ln in table.splitlines()) == 10
    assert "done" in text.splitlines()[-1]


def test_demo_without_movielens_explains_how_to_get_it(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    proc = run_demo("--skip-images", "--output", tmp_path / "out",
                    env={"SKSVD_DATA_HOME": str(empty)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "MovieLens 100K was not found" in proc.stdout
    assert "SKSVD_DATA_HOME" in proc.stdout and "load_movielens('100k')" in proc.stdout
