"""The documentation build leaves the source tree as it is: docs/errors.md, the table of
what every public function does with bad input, is generated outside the tree by
`make docs` and compared with the committed page, as here."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_docs_writes_only_under_docs_build():
    recipe = re.search(r"^docs:.*?\n((?:\t.*\n?)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "no docs target in the Makefile"
    lines = recipe.group(1)
    assert "gen_errors.py docs/_build/errors.md" in lines
    assert re.search(r"gen_errors\.py docs/errors\.md", lines) is None
    assert "docs docs/_build/html" in lines


def test_committed_errors_page_is_what_the_code_raises(tmp_path):
    out = tmp_path / "errors.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SKSVD_DEVICE": "cpu", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_errors.py"), str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    committed = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    fresh = out.read_text(encoding="utf-8")
    assert fresh == committed, (
        "docs/errors.md differs from what the code raises: run "
        "`python docs/gen_errors.py` to rewrite it")
