"""Sphinx configuration of the sksvd documentation (``make docs``; warnings are errors)."""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SKSVD_DEVICE", "cpu")

import sksvd  # noqa: E402

project = "sksvd"
author = "the sksvd developers"
copyright = "sksvd developers"  # noqa: A001
version = release = sksvd.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: math renders offline too
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

intersphinx_mapping = {}  # built offline: no inventories are fetched

html_theme = "furo"
html_title = f"sksvd {release}"
html_static_path = []

# ------------------------------------------------------------------ the benchmark report
# SKSVD_DOCS_REPORT points at another report (e.g. of a --quick run in a temporary folder).
REPORT = Path(os.environ.get("SKSVD_DOCS_REPORT", ROOT / "benchmarks" / "results" / "REPORT.md"))
MARKER = "<!-- REPORT -->"


def _report_text():
    if not REPORT.is_file():
        return ("No benchmark report has been written yet. Run `make bench` (or "
                "`make bench-quick`) to produce `benchmarks/results/REPORT.md`; it will "
                "appear here at the next `make docs`.\n")
    text = REPORT.read_text(encoding="utf-8")
    # Images and links of the report are relative to benchmarks/results/.
    rel = os.path.relpath(REPORT.parent, DOCS)

    def fix(match):
        target = match.group(2)
        if re.match(r"^(https?:|#|/)", target):
            return match.group(0)
        return f"{match.group(1)}({rel}/{target})"

    text = re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, text)
    # The page has its own title: demote the report's headings by one level.
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)


def _insert_report(app, docname, source):
    if docname == "benchmarks" and MARKER in source[0]:
        source[0] = source[0].replace(MARKER, _report_text())


# ------------------------------------------------------------------ plain-text docstrings
# The docstrings write formulas as plain text (``|p_u|**2``, ``n_components_``), readable
# in a terminal and in ``help()``. In reStructuredText, ``|x|`` is a substitution,
# ``name_`` a hyperlink reference and ``**2`` the start of bold text. After numpydoc has
# turned the sections into reST, escape those characters in running text only: never in
# inline literals, roles, literal blocks, directives or doctests.
_POWER = re.compile(r"(?<=[\w|)\]])\*\*(?=[\w(+-])")    # x**2, |p|**-1: not bold
_SPAN = re.compile(r"(``.+?``|:[\w:.-]+:`[^`]+`|`[^`]+`_?_?"
                   r"|(?<![\w|)\]])\*\*[^*\s](?:[^*]*[^*\s])?\*\*(?![\w(]))")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?!\w)")
# "name : type" lines nested in a Returns entry (the fields of a Bunch)
_NESTED_TERM = re.compile(r"^ {8,}[A-Za-z_][\w, ]* : \S")


def _escape_text(text):
    parts = _SPAN.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside inline markup
        p = _POWER.sub(r"\\*\\*", parts[i]).replace("|", "\\|")
        parts[i] = _TRAILING_UNDERSCORE.sub(r"\\_", p)
    return "".join(parts)


def _separate_nested_terms(lines):
    # A field with no description followed by the next one is not a definition
    # list for docutils: give each field its own paragraph.
    out = []
    for line in lines:
        if _NESTED_TERM.match(line) and out and out[-1].strip():
            out.append("")
        out.append(line)
    return out


def _escape_docstring(app, what, name, obj, options, lines):
    out, block_indent, in_doctest = [], None, False
    opens_block = False
    for line in _separate_nested_terms(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if block_indent is not None:
            if stripped and indent <= block_indent:
                block_indent = None
            else:
                out.append(line)
                continue
        if in_doctest:
            if not stripped:
                in_doctest = False
            out.append(line)
            continue
        if stripped.startswith(">>>"):
            in_doctest = True
            out.append(line)
            continue
        if opens_block and stripped:
            opens_block = False
        if stripped.startswith(".. ") or stripped.rstrip().endswith("::"):
            # a directive or a paragraph ending in "::": its indented body is literal
            block_indent = indent
            out.append(line if stripped.startswith(".. ") else _escape_text(line))
            continue
        if stripped.startswith("+ ") and out and out[-1].strip():
            # "+ lambda ..." continuing a formula, not a bullet list
            line = line[:indent] + "\\" + stripped
        out.append(_escape_text(line) if stripped else line)
    lines[:] = out


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing helpers, not part of sksvd's API
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def _remove_generated(app, exception):
    # autosummary's stub pages are rebuilt at every build; keep the source tree clean
    import shutil

    shutil.rmtree(DOCS / "generated", ignore_errors=True)


def setup(app):
    app.connect("source-read", _insert_report)
    app.connect("autodoc-process-docstring", _escape_docstring, priority=600)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("build-finished", _remove_generated)
