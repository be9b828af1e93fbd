"""Each script of examples/ runs to the end in a subprocess, within a time limit.

The limit is generous (a shared CI machine); on 2 idle cores each example
takes well under 20 s. The printed numbers are checked against what the
script's own protocol must give (equal PCA variances, ten hidden items per
test user, ...), the figures are opened.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

# One intra-op thread per subprocess: these tests check behaviour, not speed, and on a
# busy machine torch's OpenMP threads spin against the other processes' threads.
_ONE_THREAD = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIME_LIMIT = 300


def run_example(name, *args, env=None):
    full_env = {**os.environ, "SKSVD_DEVICE": os.environ.get("SKSVD_DEVICE", "cpu"),
                **_ONE_THREAD,
                "MPLBACKEND": "Agg", **(env or {})}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=TIME_LIMIT, env=full_env,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_every_example_is_tested():
    tested = {"01_pca_and_image_compression.py", "02_new_reader_fold_in.py",
              "03_blog_top10_overlap_adam.py", "04_course_asysvd_80_20.py",
              "05_grid_search_topk.py"}
    assert {p.name for p in EXAMPLES.glob("[0-9]*.py")} == tested


def test_01_pca_and_image_compression(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    out = run_example("01_pca_and_image_compression.py", "--output", tmp_path)
    svd_line = next(ln for ln in out.splitlines() if ln.startswith("principal variances, SVD"))
    pca_line = next(ln for ln in out.splitlines() if ln.startswith("principal variances, PCA"))
    assert svd_line.split(":")[1] == pca_line.split(":")[1]
    assert "axes agree up to sign:    True" in out
    assert "TruncatedSVDCompressor axes agree: True" in out
    assert "80% of sum s_i: rank 144" in out  # 80% of sum s_i on china.jpg needs rank 144
    for name in ("pca_point_cloud.png", "china_rank_profile.png", "china_reconstructions.png"):
        with PIL.open(tmp_path / name) as im:
            assert im.size[0] > 300


def test_02_new_reader_fold_in(data_home):
    out = run_example("02_new_reader_fold_in.py", env={"SKSVD_DATA_HOME": str(data_home)})
    # The sci-fi reader is offered the two sci-fi books she has not rated.
    assert "PureSVD recommends: ['Neuromancer', 'Foundation']" in out
    assert "SVDRecommender:" in out and "FunkSVD:" in out and "AsySVD:" in out
    assert "Star Wars (1977)" in out.split("A new MovieLens user rated:")[1].splitlines()[0]


def test_03_blog_top10_overlap(data_home):
    out = run_example("03_blog_top10_overlap_adam.py", env={"SKSVD_DATA_HOME": str(data_home)})
    assert "items hidden per user: [10]" in out
    values = {}
    for line in out.splitlines():
        parts = line.rsplit(None, 1)
        if line.startswith("  ") and len(parts) == 2:
            values.setdefault(parts[0].strip(), []).append(float(parts[1]))
    assert set(values) == {"FunkSVD, Adam (NaiveFunk)", "FunkSVD, SGD", "PureSVD",
                           "most popular"}
    assert all(0 <= v <= 1 for vs in values.values() for v in vs)
    # PureSVD beats the most-popular baseline on this protocol.
    assert values["PureSVD"][0] > values["most popular"][0]


def test_04_course_asysvd(data_home):
    out = run_example("04_course_asysvd_80_20.py", env={"SKSVD_DATA_HOME": str(data_home)})
    assert "610 users x 9724 items; train 80,669, test 20,167" in out  # floor(0.2 * 100,836)
    assert "interactions per second" in out
    assert "AsySVD (course)" in out and "PureSVD" in out


def test_05_grid_search(data_home):
    out = run_example("05_grid_search_topk.py", env={"SKSVD_DATA_HOME": str(data_home)})
    assert "best: {'n_components':" in out
    table = [ln for ln in out.splitlines() if ln.strip()[:2].strip().isdigit()]
    assert len(table) == 6  # 3 ranks x 2 shrinkages
    # Shrinkage keeps rank 200 above the plain rank-200 PureSVD (the example's point).
    ndcg = {tuple(ln.split()[:2]): float(ln.split()[2]) for ln in table}
    assert ndcg[("200", "10000.0")] > ndcg[("200", "0.0")]


def test_readme_python_blocks_run(data_home, tmp_path):
    text = (EXAMPLES.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 4
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(blocks))
    full_env = {**os.environ, "SKSVD_DEVICE": os.environ.get("SKSVD_DEVICE", "cpu"),
                **_ONE_THREAD,
                "SKSVD_DATA_HOME": str(data_home)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIME_LIMIT, env=full_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # The numbers the README states in its comments.
    assert lines[0] == "172 1614736 30.1" and lines[1] == "144"
    code = "\n".join(blocks)
    # The recommenders' outputs, stated as comment lines under the loops that print them.
    stated = [ln.strip()[2:] for ln in code.splitlines()
              if ln.strip().startswith(("# PureSVD ", "# FunkSVD ", "# AsySVD "))]
    assert len(stated) == 6
    for expected in stated:
        assert expected in lines, (expected, lines)
    # FunkSVD(loss="mse"): test RMSE and MAE, two predicted ratings.
    for expected in ("0.93 0.731", "[4.42 4.44]"):
        assert f"# {expected}" in code and expected in lines, (expected, lines)
