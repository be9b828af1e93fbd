"""The ``sksvd`` command line: ``compress``, ``recommend``, ``similar``, ``evaluate``, ``bench``.

Each subcommand has ``--help`` with an example, ``--device``, ``--verbose``
(progress bars and status lines on standard error) and ``--json`` (one JSON
document on standard output instead of the readable table). The exit status
is 0 on success, 2 on bad usage (an unknown option, a bad value, a missing
file: one line on standard error naming the argument) and 1 when the work
itself fails (for instance a download that cannot reach the network).

Examples
--------
.. code-block:: console

    $ sksvd compress photo.png --psnr 32 -o photo_svd.png --plot profile.png
    $ sksvd recommend --data ml-100k --model asysvd --rated 50:5,172:5,181:4 -k 10
    $ sksvd recommend --data ml-100k --model puresvd --user 196
    $ sksvd recommend --data ml-latest-small/ratings.csv --rated 260:5,1196:5
    $ sksvd similar --data ml-100k --item "Star Wars"
    $ sksvd evaluate --data ml-100k --models puresvd,funksvd,asysvd --folds u1,u2
    $ sksvd bench --quick

The modules behind the commands (torch, pandas, the estimators) are imported
only when a command runs, so ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

__all__ = ["main", "build_parser", "find_data_home", "format_table", "check_output_path",
           "MODELS"]

PROG = "sksvd"

#: The recommenders the command line knows: name -> (class name, the command line's own
#: parameters, over the class's defaults).
MODELS = {
    "puresvd": ("SVDRecommender", {}),
    "funksvd": ("FunkSVD", {}),
    "asysvd": ("AsySVD", {}),
}
# The module of each recommender class (its defaults are read from the source for --help).
_MODEL_FILES = {"SVDRecommender": "puresvd.py", "FunkSVD": "funksvd.py", "AsySVD": "asysvd.py"}
_TOPK_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr", "coverage")
_RATING_METRICS = ("rmse", "mae")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class UsageError(Exception):
    """Bad usage: reported on one line, exit status 2."""


# --------------------------------------------------------------------------- helpers
def find_data_home():
    """Where the command line and the demo look for MovieLens.

    :func:`sksvd.datasets.get_data_home` without an argument: the
    environment variable ``SKSVD_DATA_HOME`` when set; else the folder
    ``../shared/data`` beside a source checkout of sksvd, when it exists;
    else ``~/sksvd_data`` (where :func:`sksvd.datasets.load_movielens`
    downloads to).

    Returns
    -------
    pathlib.Path
        The data home.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> from sksvd.cli import find_data_home
    >>> with mock.patch.dict(os.environ, {"SKSVD_DATA_HOME": "/tmp/movielens"}):
    ...     print(find_data_home())
    /tmp/movielens
    """
    from .datasets import get_data_home

    return get_data_home()


def _fmt(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


_NUMBERISH = re.compile(r"^[-+]?[\d.,]+( ± [\d.,]+)?$|^n/a$")


def _numberish(value):
    if value is None or isinstance(value, (int, float)):
        return not isinstance(value, bool)
    return isinstance(value, str) and bool(_NUMBERISH.match(value))


def format_table(rows, columns=None, *, digits=4):
    """Render a list of dicts as an aligned text table.

    Numbers (and strings such as ``"0.41 ± 0.02"``) are right-aligned (floats
    with ``digits`` decimals, ints with thousands separators), text
    left-aligned; ``None`` shows as ``-`` and NaN as ``n/a``.

    Parameters
    ----------
    rows : list of dict
    columns : list of str, default=None
        Column order (default: the keys of the first row).
    digits : int, default=4

    Returns
    -------
    str
        The header, a rule of dashes and one line per row (built with pandas).

    Examples
    --------
    >>> from sksvd.cli import format_table
    >>> print(format_table([{"model": "PureSVD", "ndcg": 0.39683},
    ...                     {"model": "FunkSVD", "ndcg": float("nan")}]))
    model      ndcg
    -------  ------
    PureSVD  0.3968
    FunkSVD     n/a
    """
    if not rows:
        return ""
    import pandas as pd

    columns = list(columns or rows[0].keys())
    raw = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns,
                       dtype=object)
    cells = raw.map(lambda v: _fmt(v, digits))
    numeric = raw.map(_numberish).all() & ~raw.isna().all()
    widths = cells.map(len).max().combine(pd.Series(columns, index=columns).str.len(), max)
    header = pd.DataFrame([columns, ["-" * w for w in widths]], columns=columns)
    table = pd.concat([header, cells], ignore_index=True)
    for c in columns:
        pad = table[c].str.rjust if numeric[c] else table[c].str.ljust
        table[c] = pad(int(widths[c]))
    return "\n".join(table.agg("  ".join, axis=1).str.rstrip())


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _emit(args, payload, text):
    if args.json:
        print(json.dumps(_jsonable(payload), indent=2))
    else:
        print(text)


def _status(args, message):
    if args.verbose:
        print(f"[sksvd] {message}", file=sys.stderr, flush=True)


def _class_info(cls_name):
    """``(defaults, options)`` of a recommender class, read from its source file.

    ``defaults``: the ``__init__`` keyword defaults; ``options``: for each
    parameter constrained by ``StrOptions({...})`` in ``_parameter_constraints``,
    its sorted options. Read with :mod:`ast` rather than by importing the
    class, so that ``--help`` answers without loading torch; the values used
    to run are checked against the imported class (:func:`_param_options`).
    """
    import ast

    defaults, options = {}, {}
    try:
        tree = ast.parse((Path(__file__).parent / "recommenders"
                          / _MODEL_FILES[cls_name]).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, KeyError):  # pragma: no cover - a broken install
        return defaults, options
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name),
               None)
    for node in [] if cls is None else cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            a = node.args
            pos = a.args[1:]
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults, strict=True))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
                      if d is not None]
            for arg, d in pairs:
                try:
                    defaults[arg.arg] = ast.literal_eval(d)
                except ValueError:
                    pass
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(
            node, ast.Assign) else None)
        if getattr(target, "id", None) == "_parameter_constraints" and \
                isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                for call in ast.walk(value):
                    if isinstance(call, ast.Call) and getattr(call.func, "id", "") == \
                            "StrOptions" and call.args and isinstance(call.args[0], ast.Set):
                        try:
                            options[key.value] = sorted(ast.literal_eval(call.args[0]))
                        except ValueError:
                            pass
    return defaults, options


def _cli_default(name, param):
    """The value the command line gives ``param`` of model ``name`` unless told otherwise."""
    cls_name, params = MODELS[name]
    return params.get(param, _class_info(cls_name)[0].get(param))


def _defaults_text(param, names=tuple(MODELS)):
    parts = []
    for name in names:
        cls_name = MODELS[name][0]
        if param in _class_info(cls_name)[0]:
            parts.append(f"{cls_name} {_cli_default(name, param)}")
    return ", ".join(parts) or "none"


def _param_options(cls, param):
    """The string options of ``param`` in the (imported) class's constraints, or None."""
    for c in cls._parameter_constraints.get(param, []):
        if hasattr(c, "options"):
            return sorted(c.options)
    return None


def check_output_path(path, option="--output", suffixes=None):
    """Check that a file can be written at ``path`` before any work starts.

    Parameters
    ----------
    path : str or path-like
    option : str, default="--output"
        The option named in the message.
    suffixes : sequence of str, default=None
        Accepted file endings (e.g. ``(".csv", ".json")``), any when None.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    UsageError
        The folder does not exist or is not writable, the path is a folder,
        or the ending is not among ``suffixes``: one line naming the option
        and the path.

    Examples
    --------
    >>> from sksvd.cli import check_output_path
    >>> check_output_path("/nonexistent/dir/x.png")
    Traceback (most recent call last):
    ...
    sksvd.cli.UsageError: --output '/nonexistent/dir/x.png': the folder /nonexistent/dir does not exist
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{option} {str(path)!r}: is a folder; expected a file name")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {str(path)!r}: the folder {parent} is not writable")
    if suffixes and p.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {str(path)!r}: expected a file ending in "
                         f"{', '.join(suffixes)}")
    return p


# --------------------------------------------------------------------------- argument types
def _number(cast, accept, expected):
    """An argparse type: ``cast(text)``, refused unless ``accept(value)``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid {cast.__name__} value: {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text}: expected {expected}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "an int >= 1")
_share = _number(float, lambda v: 0 < v < 1, "a float in (0, 1)")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a finite float > 0")
_finite_float = _number(float, math.isfinite, "a finite float")


def _device(text):
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):  # refused here, before any data is read, when absent
        from ._backend import resolve_device

        try:
            resolve_device(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("device=")) from None
    return text


def _csv_list(choices, what):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list")
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad[0]!r}: expected some of {', '.join(choices)}"
            )
        if len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(f"{text!r}: a {what} is repeated")
        return items

    return parse


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the argument, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=100)


def _common(p, json_flag=True):
    g = p.add_argument_group("common options")
    g.add_argument("--device", type=_device, default="auto",
                   help="auto (SKSVD_DEVICE, else cuda when available, else cpu), cpu, cuda, "
                        "cuda:N (default: auto)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="progress bars and status lines on standard error")
    if json_flag:
        g.add_argument("--json", action="store_true",
                       help="print one JSON document instead of a table")


def _data_options(p):
    p.add_argument("--data", default="ml-100k", metavar="NAME|CSV",
                   help="a MovieLens release (ml-100k, ml-latest-small, ml-1m, ml-10m, ml-20m, "
                        "ml-25m) or any ratings file: separator (, tab ; :: |) and columns "
                        "guessed (userId/user_id/user..., movieId/item_id/item..., "
                        "rating/score...; a file without a header: user, item, rating), or "
                        "named with --columns (default: ml-100k)")
    p.add_argument("--columns", metavar="USER,ITEM[,RATING]", default=None,
                   help="the columns of a ratings file holding the user ids, the item ids and "
                        "the ratings (no RATING: implicit data, every row counts 1)")
    p.add_argument("--items", metavar="CSV", default=None,
                   help="item titles for a ratings file: a table with an id column and a "
                        "'title' column, e.g. MovieLens' movies.csv (default: movies.csv or "
                        "items.csv beside the ratings file, when there is one)")
    p.add_argument("--data-home", default=None, metavar="DIR",
                   help="folder holding the MovieLens folders (default: $SKSVD_DATA_HOME, else "
                        "../shared/data beside a checkout, else ~/sksvd_data)")
    p.add_argument("--no-download", action="store_true",
                   help="fail instead of downloading a missing release")


def _model_options(p):
    p.add_argument("--components", type=_positive_int, default=None, metavar="D",
                   help=f"number of factors (default: {_defaults_text('n_components')})")
    p.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                   help="most training epochs of FunkSVD and AsySVD, which stop early when "
                        "their validation score on 10%% of the training ratings stops "
                        "improving (FunkSVD: with loss mse only) "
                        f"(default: {_defaults_text('n_epochs')})")
    losses = [f"{MODELS[n][0]} {{{','.join(_class_info(MODELS[n][0])[1]['loss'])}}}"
              for n in MODELS if "loss" in _class_info(MODELS[n][0])[1]]
    p.add_argument("--loss", default=None, metavar="LOSS",
                   help="training loss of the models that have one, passed as loss=: "
                        + ("; ".join(losses) or "none has")
                        + f" (default: {_defaults_text('loss')})")
    p.add_argument("--shrinkage", type=_finite_float, default=None, metavar="FLOAT",
                   help="spectrum shrinkage lambda of PureSVD, passed as shrinkage= (item-item "
                        "weights V diag(s^2/(s^2+lambda)) V^T; default: "
                        f"{_defaults_text('shrinkage', ('puresvd',))})")
    p.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")


_COMPRESS_EXAMPLES = """\
The rank is chosen by exactly one of --rank, --energy, --sv-share or --psnr.
The factors are stored at 8 bits by default (--factor-dtype uint8: one byte
per number and a float32 scale and offset per component), k * (h + w*c) + 16 k
bytes, beside the raw image's h * w * c bytes; the compression ratio is raw /
compressed (above 1: smaller than the raw image). PSNR is measured after that
quantization, and JPEG at the same number of bytes is shown for comparison
(Pillow, best quality that fits). --save writes the factors (.npz, read back
by `sksvd decompress`) and prints the size on disk.

examples:
  sksvd compress photo.png --rank 50 -o photo_r50.png
  sksvd compress photo.jpg --psnr 32 --save photo.npz --plot profile.png
  sksvd compress photo.jpg --sv-share 0.8 --factor-dtype float32 --json
"""

_DECOMPRESS_EXAMPLES = """\
Reads a file written by `sksvd compress --save` (never executing code: the
arrays are checked against the SHA-256 saved with them) and writes the
reconstructed image.

examples:
  sksvd decompress photo.npz -o photo_svd.png
  sksvd decompress photo.npz -o photo_svd.png --original photo.jpg --json
"""

_RECOMMEND_EXAMPLES = """\
A new user is given by the items they rated (--rated ITEM:RATING,...; item ids
as in the data, MovieLens movie ids) and folded into the fitted model: no
refit. A user of the data (--user ID) gets recommendations from their own
ratings, folded in the same way. Items the user rated are never recommended.

A user of the data is scored with the vector the model learned for them (as
implicit's recalculate_user=False); scores are the model's own (not clipped).

examples:
  sksvd recommend --data ml-100k --model asysvd --rated 50:5,172:5,181:4 -k 10
  sksvd recommend --data ml-100k --model puresvd --user 196 -k 5 --json
  sksvd recommend --data ml-latest-small/ratings.csv --rated 260:5,1196:5
  sksvd recommend --data ratings.csv --columns user_id,item_id,score --user 42 -o top.csv
"""

_SIMILAR_EXAMPLES = """\
The item is given by its id, or by words of its title (the most rated item
whose title contains them). Similarity is the cosine of the fitted item
factors; the item itself is left out.

examples:
  sksvd similar --data ml-100k --item "Star Wars" -k 5
  sksvd similar --data ml-latest-small/ratings.csv --item 260 --model asysvd --json
"""

_EVALUATE_EXAMPLES = """\
Each model is fitted on a fold's training ratings and evaluated on its test
ratings (the same users): every user's training items are folded in and
excluded, the top-k list is compared with their test items (NDCG, recall,
precision, MAP at k; with --relevance-threshold only test items rated at least
that count), and RMSE/MAE compare predicted and test ratings (FunkSVD and
AsySVD; PureSVD scores are not ratings, shown as n/a). ml-100k uses its
official folds u1..u5 (default u1); other data get a per-user random 80/20
split of each user's ratings (--test-size, --seed). Means over folds, with the standard deviation
when there are several.

examples:
  sksvd evaluate --data ml-100k --models puresvd,funksvd,asysvd
  sksvd evaluate --data ml-100k --models funksvd --folds u1,u2,u3,u4,u5 --json
"""

_BENCH_EXAMPLES = """\
Runs `python -m benchmarks.run` of a source checkout of sksvd (the benchmarks/
folder is not part of the installed package) and passes every other argument
to it. It first checks the optional packages the chosen benchmarks need (the
[bench] extra: implicit, scikit-surprise) and stops, naming them, when one is
missing. The results (REPORT.md, JSON, figures) go to a folder outside the
source tree (~/.cache/sksvd/bench/, or $SKSVD_BENCH_OUT) unless --out names
one, e.g. --out benchmarks/results to update the recorded results.

examples:
  sksvd bench --quick
  sksvd bench -- --help          (the options of benchmarks/run.py)
"""


def build_parser():
    """The ``argparse`` parser of the ``sksvd`` command.

    Returns
    -------
    argparse.ArgumentParser
        One subparser per command, each with its options and an example.

    Examples
    --------
    >>> from sksvd.cli import build_parser
    >>> args = build_parser().parse_args(["compress", "img.png", "--rank", "20"])
    >>> args.command, args.rank, args.device
    ('compress', 20, 'auto')
    """
    from . import __version__

    parser = _Parser(
        prog=PROG, formatter_class=_Formatter,
        description="scikit-learn compatible SVD estimators: compress images, recommend, "
                    "find similar items, evaluate, benchmark.",
        epilog="examples:\n"
               "  sksvd compress photo.png --psnr 32 -o photo_svd.png\n"
               "  sksvd recommend --data ml-100k --model asysvd --rated 50:5,172:5,181:4\n"
               "  sksvd similar --data ml-100k --item \"Star Wars\"\n"
               "  sksvd evaluate --data ml-100k --models puresvd,funksvd,asysvd\n"
               "  sksvd bench --quick\n\n"
               "`sksvd COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"sksvd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("compress", help="compress an image by truncated SVD",
                       description="Compress an image by a truncated SVD of its (h, w*c) "
                                   "matrix; print its PSNR and size.",
                       epilog=_COMPRESS_EXAMPLES, formatter_class=_Formatter)
    p.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, TIFF, ...)")
    rank = p.add_mutually_exclusive_group(required=True)
    rank.add_argument("--rank", type=_positive_int, metavar="K", help="keep K singular values")
    rank.add_argument("--energy", type=_share, metavar="F",
                      help="smallest rank holding the share F of sum s_i^2 (0 < F < 1)")
    rank.add_argument("--sv-share", type=_share, metavar="F",
                      help="smallest rank holding the share F of sum s_i (the blog post "
                           "'SVD for Image Compression and Recommender Systems': "
                           "'80%% of the variance')")
    rank.add_argument("--psnr", type=_positive_float, metavar="DB",
                      help="smallest rank whose reconstruction from the stored factors "
                           "reaches DB decibels")
    p.add_argument("-o", "--output", metavar="OUT.png",
                   help="write the reconstructed image (PNG, or .npy for any dtype)")
    p.add_argument("--save", metavar="OUT.npz",
                   help="write the compressed image (the stored factors, .npz) and print its "
                        "size on disk; `sksvd decompress` reads it")
    p.add_argument("--plot", metavar="PROFILE.png",
                   help="write the figure of quality and size against rank")
    p.add_argument("--factor-dtype", choices=("uint8", "float16", "float32"), default="uint8",
                   help="storage type of the factors, counted in the size (default: uint8)")
    p.add_argument("--no-jpeg", action="store_true", help="skip the JPEG comparison")
    _common(p)

    p = sub.add_parser("decompress", help="rebuild an image saved by `compress --save`",
                       description="Read a compressed image (.npz written by `sksvd compress "
                                   "--save`) and write the reconstructed image.",
                       epilog=_DECOMPRESS_EXAMPLES, formatter_class=_Formatter)
    p.add_argument("file", metavar="FILE", help="compressed image (.npz)")
    p.add_argument("-o", "--output", metavar="OUT.png", required=True,
                   help="the reconstructed image (PNG, or .npy for any dtype)")
    p.add_argument("--original", metavar="IMAGE",
                   help="also print the PSNR against this original image")
    _common(p)

    def who(p):  # a user of the data, or a new user's ratings
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--user", metavar="ID", help="id of a user of the data")
        g.add_argument("--rated", metavar="ITEM:RATING,...",
                       help="a new user's ratings, e.g. 50:5,172:5,181:4")

    def which(p):
        p.add_argument("--item", required=True, metavar="ID|TITLE",
                       help="an item id, or words of its title, e.g. \"Star Wars\"")

    for name, short, long, epilog, target, k_help in (
        ("recommend", "top-k items for a user or a new user",
         "Fit a recommender and print the top-k items, with titles, for a user of the data "
         "or a new user.", _RECOMMEND_EXAMPLES, who, "items to recommend"),
        ("similar", "the items most similar to an item",
         "Fit a recommender and print the items whose factors are most similar (cosine) to "
         "an item's, with titles.", _SIMILAR_EXAMPLES, which, "similar items to list"),
    ):
        p = sub.add_parser(name, help=short, description=long, epilog=epilog,
                           formatter_class=_Formatter)
        _data_options(p)
        p.add_argument("--model", choices=tuple(MODELS), default="puresvd",
                       help="the recommender (default: puresvd)")
        target(p)
        p.add_argument("-k", type=_positive_int, default=10, help=f"{k_help} (default: 10)")
        p.add_argument("-o", "--output", metavar="FILE", default=None,
                       help="also write the list to FILE (.csv or .json)")
        _model_options(p)
        _common(p)

    p = sub.add_parser("evaluate", help="NDCG/recall/precision/MAP at k and RMSE of models",
                       description="Fit models on training folds and print top-k and rating "
                                   "metrics side by side.",
                       epilog=_EVALUATE_EXAMPLES, formatter_class=_Formatter)
    _data_options(p)
    p.add_argument("--models", type=_csv_list(tuple(MODELS), "model"),
                   default=list(MODELS), metavar="M1,M2",
                   help="comma-separated, among puresvd, funksvd, asysvd (default: all three)")
    p.add_argument("--folds", metavar="u1,...",
                   help="official ml-100k folds among u1..u5, ua, ub, or 'all' for u1..u5 "
                        "(default: u1)")
    p.add_argument("--metrics", type=_csv_list(_TOPK_METRICS + _RATING_METRICS, "metric"),
                   default=["ndcg", "recall", "precision", "map", "rmse", "mae"],
                   metavar="M1,M2", help="among " + ", ".join(_TOPK_METRICS + _RATING_METRICS)
                   + " (default: ndcg,recall,precision,map,rmse,mae)")
    p.add_argument("-k", type=_positive_int, default=10, help="list length (default: 10)")
    p.add_argument("--relevance-threshold", type=_finite_float, default=None, metavar="R",
                   help="only test ratings >= R are relevant (default: every test rating)")
    p.add_argument("--test-size", type=_share, default=0.2, metavar="F",
                   help="share of ratings held out when the data have no official folds "
                        "(default: 0.2)")
    _model_options(p)
    _common(p)

    p = sub.add_parser("bench", help="run the benchmark suite (benchmarks/run.py)",
                       description="Run the benchmark suite of a source checkout.",
                       epilog=_BENCH_EXAMPLES, formatter_class=_Formatter)
    g = p.add_argument_group("common options")
    g.add_argument("--device", type=_device, default=None,
                   help="auto, cpu, cuda or cuda:N, passed on to benchmarks/run.py (default: "
                        "its own, cpu)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="print the command run (the suite logs its progress itself)")
    return parser


# --------------------------------------------------------------------------- compress
def _read_image(path):
    import numpy as np

    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise UsageError("IMAGE: reading images needs Pillow: pip install 'sksvd[image]'") \
            from None
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"IMAGE {path!r}: no such file")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    try:
        with Image.open(p) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("L" if im.mode == "1" else "RGB")
            return np.asarray(im)
    except OSError as exc:
        raise UsageError(f"IMAGE {path!r}: not an image Pillow can read ({exc})") from None


def _write_image(path, img):
    import numpy as np

    p = Path(path)
    if p.suffix.lower() == ".npy":
        np.save(p, img)
        return
    from PIL import Image

    try:
        Image.fromarray(img).save(p)
    except (TypeError, ValueError, KeyError, OSError) as exc:
        raise UsageError(
            f"--output {path!r}: cannot write a {img.dtype} image of shape {img.shape} there "
            f"({exc}); use a .npy file"
        ) from None


def _profile_ranks(max_rank, k, break_even):
    import numpy as np

    # Up to a bit past the rank where the factors outweigh the raw image (the
    # interesting part of the curve), and always the chosen rank.
    top = int(min(max_rank, max(k, 2, round(1.5 * break_even))))
    grid = np.unique(np.round(np.geomspace(1, top, 12)).astype(int))
    return sorted(set(grid.tolist()) | {int(k)})


def _size_rows(result):
    rows = [
        ("size of the factors", f"{result['factor_bytes']:,} bytes ({result['factor_dtype']})"),
        ("raw image", f"{result['raw_bytes']:,} bytes"),
        ("compression ratio", f"{result['compression_ratio']:.2f} (raw / compressed)"),
    ]
    if "file_bytes" in result:
        rows.append(("file on disk", f"{result['file_bytes']:,} bytes ({result['file']})"))
    return rows


def _table(head, rows):
    width = max(len(r[0]) for r in rows)
    return "\n".join([head] + [f"  {name.ljust(width)}  {value}" for name, value in rows])


def _cmd_compress(args):
    import numpy as np

    from .image import compress_image, psnr, rank_profile

    img = _read_image(args.image)
    if img.ndim not in (2, 3) or img.size == 0:
        raise UsageError(f"IMAGE {args.image!r}: expected a 2-D or 3-D image, got shape "
                         f"{img.shape}")
    h = img.shape[0]
    wc = int(np.prod(img.shape[1:]))
    max_rank = min(h, wc)
    if args.rank is not None and args.rank > max_rank:
        raise UsageError(f"--rank {args.rank}: expected at most min(h, w*c) = {max_rank} for "
                         f"an image of shape {img.shape}")
    _status(args, f"compressing {args.image} {img.shape} {img.dtype}")
    t0 = time.perf_counter()
    common = dict(factor_dtype=args.factor_dtype, device=args.device, random_state=0)
    if args.psnr is not None:
        ci = compress_image(img, psnr=args.psnr, **common)
    elif args.sv_share is not None:
        ci = compress_image(img, args.sv_share, criterion="singular_values", **common)
    else:
        ci = compress_image(img, args.rank if args.rank is not None else args.energy, **common)
    seconds = time.perf_counter() - t0
    recon = ci.reconstruct()
    result = {
        "image": str(args.image), "shape": list(img.shape), "dtype": str(img.dtype),
        "rank": ci.n_components, "energy": float(ci.energy),
        "singular_value_share": None if ci.singular_value_share is None
        else float(ci.singular_value_share),
        "psnr_db": float(psnr(img, recon)), "raw_bytes": int(img.nbytes),
        "factor_bytes": int(ci.nbytes), "compression_ratio": float(ci.compression_ratio),
        "factor_dtype": args.factor_dtype, "seconds": round(seconds, 3),
    }
    if args.save:
        try:
            result["file_bytes"] = ci.save(args.save)
        except OSError as exc:
            raise UsageError(f"--save {args.save!r}: cannot write there ({exc})") from None
        result["file"] = str(args.save)
    want_jpeg = not args.no_jpeg and (img.ndim == 2 or img.shape[2] in (1, 3))
    if args.plot or want_jpeg:
        break_even = img.nbytes / max(ci.nbytes / ci.n_components, 1)
        ranks = _profile_ranks(max_rank, ci.n_components, break_even) if args.plot \
            else [ci.n_components]
        _status(args, f"rank profile at ranks {ranks}")
        profile = rank_profile(img, ranks, ssim=False, jpeg=want_jpeg,
                               factor_dtype=args.factor_dtype, device=args.device)
        row = profile[profile["rank"] == ci.n_components].iloc[0]
        if result["singular_value_share"] is None:
            result["singular_value_share"] = float(row["singular_value_share"])
        if want_jpeg:
            result["jpeg_psnr_same_bytes"] = float(row["jpeg_psnr"])
            result["jpeg_bytes"] = None if math.isnan(float(row["jpeg_nbytes"])) \
                else int(row["jpeg_nbytes"])
            result["jpeg_max_psnr"] = float(row["jpeg_max_psnr"])
        if args.plot:
            from .plotting import plot_rank_profile

            fig = plot_rank_profile(profile, title=f"{Path(args.image).name}: SVD compression "
                                                   "against rank")
            fig.savefig(args.plot, dpi=110)
            result["plot"] = str(args.plot)
    if args.output:
        _write_image(args.output, recon)
        result["output"] = str(args.output)

    rows = [
        ("energy (share of sum s_i^2)", f"{result['energy']:.4f}"),
        ("share of sum s_i", "-" if result["singular_value_share"] is None
         else f"{result['singular_value_share']:.4f}"),
        ("PSNR", f"{result['psnr_db']:.2f} dB (after quantization and rounding)"),
        *_size_rows(result),
    ]
    if "jpeg_psnr_same_bytes" in result:
        jp = result["jpeg_psnr_same_bytes"]
        rows.append(("JPEG at <= the same bytes",
                     "n/a (even quality 1 is larger)" if math.isnan(jp)
                     else f"{jp:.2f} dB ({result['jpeg_bytes']:,} bytes)"))
        rows.append(("JPEG at quality 100", f"{result['jpeg_max_psnr']:.2f} dB"))
    if args.output:
        rows.append(("written", args.output))
    if args.plot:
        rows.append(("figure", args.plot))
    head = (f"{args.image}: {img.shape[0]} x {'x'.join(map(str, img.shape[1:]))} "
            f"{img.dtype}, rank {ci.n_components} of {max_rank}")
    _emit(args, result, _table(head, rows))
    return 0


def _cmd_decompress(args):
    from .image import CompressedImage, psnr

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"FILE {args.file!r}: no such file")
    try:
        ci = CompressedImage.load(path)
    except ValueError as exc:  # a file that is not a compressed image: a bad FILE argument
        raise UsageError(f"FILE {args.file!r}: {exc}") from None
    recon = ci.reconstruct()
    result = {
        "file": str(args.file), "file_bytes": int(path.stat().st_size),
        "shape": list(ci.shape), "dtype": str(ci.dtype), "rank": ci.n_components,
        "factor_dtype": ci.factor_dtype, "factor_bytes": int(ci.nbytes),
        "raw_bytes": int(ci.original_nbytes), "compression_ratio": float(ci.compression_ratio),
        "expected_psnr_db": ci.expected_psnr,
    }
    if args.original:
        img = _read_image(args.original)
        if img.shape != recon.shape:
            raise UsageError(f"--original {args.original!r}: shape {img.shape}, expected "
                             f"{recon.shape} (the compressed image's)")
        result["psnr_db"] = float(psnr(img, recon))
    _write_image(args.output, recon)
    result["output"] = str(args.output)
    rows = [("size of the factors", f"{result['factor_bytes']:,} bytes ({ci.factor_dtype})"),
            ("raw image", f"{result['raw_bytes']:,} bytes"),
            ("compression ratio", f"{result['compression_ratio']:.2f} (raw / compressed)"),
            ("file on disk", f"{result['file_bytes']:,} bytes")]
    if ci.expected_psnr is not None:
        rows.append(("PSNR before rounding", f"{ci.expected_psnr:.2f} dB"))
    if "psnr_db" in result:
        rows.append(("PSNR against --original", f"{result['psnr_db']:.2f} dB"))
    rows.append(("written", args.output))
    head = (f"{args.file}: {ci.shape[0]} x {'x'.join(map(str, ci.shape[1:]))} {ci.dtype}, "
            f"rank {ci.n_components}")
    _emit(args, result, _table(head, rows))
    return 0


# --------------------------------------------------------------------------- data and models
_RATINGS_SUFFIXES = (".csv", ".tsv", ".txt", ".data", ".dat")


def _guess_sep(path):
    """The separator of a ratings file, from its first line (, tab ; :: |)."""
    if Path(path).suffix.lower() == ".tsv":
        return "\t"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return ","
    for sep in ("::", "\t", ",", ";", "|"):
        if sep in head:
            return sep
    return ","


def _load_data(args, fold=None):
    from .datasets import load_movielens, load_ratings

    home = Path(args.data_home).expanduser() if args.data_home else find_data_home()
    path = Path(args.data).expanduser()
    if path.suffix.lower() in _RATINGS_SUFFIXES or path.is_file():
        if not path.is_file():
            raise UsageError(f"--data {args.data!r}: no such file")
        if fold:
            raise UsageError("--folds: only the ml-100k release has official folds")
        columns = {}
        if args.columns:
            names = [c.strip() for c in args.columns.split(",")]
            if len(names) not in (2, 3) or not all(names):
                raise UsageError(f"--columns {args.columns!r}: expected USER,ITEM or "
                                 "USER,ITEM,RATING")
            columns = {"user_col": names[0], "item_col": names[1],
                       "rating_col": names[2] if len(names) == 3 else None}
        items = args.items
        if items is not None and not Path(items).expanduser().is_file():
            raise UsageError(f"--items {items!r}: no such file")
        if items is None:
            items = next((path.parent / n for n in ("movies.csv", "items.csv")
                          if (path.parent / n).is_file() and (path.parent / n) != path), None)
        _status(args, f"reading {path}" + (f" (titles from {items})" if items else ""))
        try:
            return load_ratings(path, sep=_guess_sep(path), **columns,
                                items=None if items is None else Path(items).expanduser())
        except ValueError as exc:
            what = "--items" if items is not None and str(items) in str(exc) \
                and str(path) not in str(exc) else "--data"
            raise UsageError(f"{what}: {exc}") from None
    name = args.data[3:] if args.data.startswith("ml-") else args.data
    _status(args, f"loading MovieLens {name} from {home}")
    try:
        return load_movielens(name, fold=fold, data_home=home,
                              download_if_missing=not args.no_download)
    except FileNotFoundError as exc:
        raise UsageError(f"--data {args.data!r}: not found under {home} ({exc}); set "
                         "SKSVD_DATA_HOME or --data-home, or drop --no-download") from None
    except ValueError as exc:
        raise UsageError(f"--data {args.data!r}: {exc}") from None


def _make_model(name, args):
    import sksvd

    cls_name, params = MODELS[name]
    cls = getattr(sksvd, cls_name)
    accepted = cls().get_params()
    params = dict(params)
    if args.components is not None:
        params["n_components"] = args.components
    if args.epochs is not None and "n_epochs" in accepted:
        params["n_epochs"] = args.epochs
    if getattr(args, "loss", None) is not None and "loss" in accepted:
        options = _param_options(cls, "loss")
        if options is not None and args.loss not in options:
            raise UsageError(f"--loss {args.loss!r}: {cls_name} takes one of "
                             f"{', '.join(options)}")
        params["loss"] = args.loss
    if getattr(args, "shrinkage", None) is not None and "shrinkage" in accepted:
        params["shrinkage"] = args.shrinkage
    if params.get("loss") == "mse" and "early_stopping" in accepted:
        # Rating models stop early on the RMSE of held-out ratings.
        params["early_stopping"] = True
    params.update(device=args.device, random_state=args.seed, verbose=int(args.verbose > 0))
    return cls(**params)


def _check_model_options(args, names):
    """--loss and --shrinkage must apply to at least one of the chosen models."""
    import sksvd

    for option, param in (("--loss", "loss"), ("--shrinkage", "shrinkage")):
        if getattr(args, param, None) is None:
            continue
        if not any(param in getattr(sksvd, MODELS[n][0])().get_params() for n in names):
            raise UsageError(f"{option}: none of {', '.join(MODELS[n][0] for n in names)} "
                             f"has a {param} parameter")


def _check_rank(name, n_components, X):
    limit = min(X.shape)
    if name == "puresvd" and n_components not in ("auto", None) and n_components > limit:
        raise UsageError(f"--components {n_components}: expected at most "
                         f"min(n_users, n_items) = {limit}")


def _title(ds, col):
    items = dict.get(ds, "items")  # the item table, when the data have one
    if items is not None and hasattr(items, "columns") and "title" in items.columns:
        title = items["title"].iloc[col]
        if isinstance(title, str) and title:
            return title
    return str(ds.item_ids[col])


def _parse_id(text, ids, what):
    import numpy as np

    if np.issubdtype(np.asarray(ids).dtype, np.integer):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{what} {text!r}: expected an integer id") from None
    return text


def _parse_rated(spec, ds):
    import numpy as np
    import scipy.sparse as sp

    cols, values, seen = [], [], set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        item, sep, rating = part.rpartition(":")
        if not sep or not item:
            raise UsageError(f"--rated {part!r}: expected ITEM:RATING, e.g. 50:5")
        try:
            value = float(rating)
        except ValueError:
            raise UsageError(f"--rated {part!r}: rating {rating!r} is not a number") from None
        if not math.isfinite(value) or value == 0:
            raise UsageError(f"--rated {part!r}: expected a finite, nonzero rating")
        key = _parse_id(item, ds.item_ids, "--rated: item")
        if key not in ds.item_index:
            raise UsageError(f"--rated {part!r}: item {item} is not in --data {_ds_name(ds)}")
        col = int(ds.item_index[key])
        if col in seen:
            raise UsageError(f"--rated {part!r}: item {item} is given twice")
        seen.add(col)
        cols.append(col)
        values.append(value)
    if not cols:
        raise UsageError(f"--rated {spec!r}: expected at least one ITEM:RATING")
    X = sp.csr_matrix((np.asarray(values, dtype=np.float32),
                       (np.zeros(len(cols), dtype=np.int64), np.asarray(cols))),
                      shape=(1, ds.X.shape[1]))
    return X


def _ds_name(ds):
    """Short name of a loaded data set, for messages."""
    name = dict.get(ds, "name")
    return f"ml-{name}" if name and not str(name).startswith("ml-") else (name or "data")


def _plain(value):
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _output_path(args):
    return None if args.output is None else check_output_path(
        args.output, "--output", (".csv", ".json"))


def _write_frame(path, frame):
    try:
        if path.suffix.lower() == ".json":
            frame.to_json(path, orient="records", indent=2)
        else:
            frame.to_csv(path, index=False)
    except OSError as exc:
        raise UsageError(f"--output {str(path)!r}: cannot write there ({exc})") from None


def _list_rows(frame, score_label, bounds=None):
    """Table rows of a to_frame result: rank, id, title, score (and predicted rating)."""
    rows = []
    for rec in frame.to_dict("records"):
        row = {"rank": rec["rank"], "id": str(rec["item_id"]),
               "title": rec.get("title") or str(rec["item_id"]), score_label: rec["score"]}
        if bounds is not None:
            row["predicted rating"] = min(max(rec["score"], bounds[0]), bounds[1])
        rows.append(row)
    return rows


def _fit(args, model, ds):
    _check_rank(args.model, model.n_components, ds.X)
    _status(args, f"fitting {type(model).__name__} on {ds.X.shape[0]:,} users x "
                  f"{ds.X.shape[1]:,} items, {ds.X.nnz:,} ratings")
    t0 = time.perf_counter()
    model.fit(ds.X)
    return time.perf_counter() - t0


def _cmd_recommend(args):
    out = _output_path(args)
    ds = _load_data(args)
    if args.k > ds.X.shape[1]:
        raise UsageError(f"-k {args.k}: expected at most the number of items, {ds.X.shape[1]}")
    row = None
    if args.user is not None:
        key = _parse_id(args.user, ds.user_ids, "--user")
        if key not in ds.user_index:
            raise UsageError(f"--user {args.user}: no such user in --data {args.data}")
        row = int(ds.user_index[key])
        x = ds.X[row]
        who = f"user {args.user} ({x.nnz} ratings)"
    else:
        x = _parse_rated(args.rated, ds)
        who = "a new user who rated " + ", ".join(
            f"{_title(ds, c)} {v:g}" for c, v in zip(x.indices, x.data, strict=True))
    _check_model_options(args, [args.model])
    model = _make_model(args.model, args)
    fit_s = _fit(args, model, ds)
    if row is not None:  # a fitted user: the vector the model learned for them
        ids, scores = model.recommend(x, k=args.k, users=[row])
    else:
        ids, scores = model.recommend(x, k=args.k)
    frame = ds.to_frame(ids, scores)
    bounds = model._rating_bounds()
    if out is not None:
        _write_frame(out, frame)
    recs = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
    payload = {"data": args.data, "model": type(model).__name__, "params": {
        k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str))},
        "fit_seconds": round(fit_s, 3), "who": who,
        "rated": [{"item_id": _plain(ds.item_ids[c]), "title": _title(ds, c),
                   "rating": float(v)} for c, v in zip(x.indices, x.data, strict=True)],
        "recommendations": recs}
    if bounds is not None:
        payload["rating_range"] = list(bounds)
    text = (f"{type(model).__name__} ({model.item_factors_.shape[1]} factors, fitted on {args.data} in "
            f"{fit_s:.1f} s), top {len(recs)} for {who}:\n"
            + format_table(_list_rows(frame, "score", bounds), digits=3))
    if out is not None:
        text += f"\nwritten: {out}"
    _emit(args, payload, text)
    return 0


def _find_item(text, ds):
    """(column, note) of the item named by ``--item``: an id, else words of a title."""
    import numpy as np

    if np.issubdtype(np.asarray(ds.item_ids).dtype, np.integer):
        try:
            key = int(text)
        except ValueError:
            key = None
    else:
        key = text
    if key is not None and key in ds.item_index:
        return int(ds.item_index[key]), ""
    try:
        hits = ds.find_items(text)
    except ValueError:
        raise UsageError(f"--item {text!r}: not an item id of --data {_ds_name(ds)}, which "
                         "has no titles to search (give --items FILE)") from None
    if hits.size == 0:
        raise UsageError(f"--item {text!r}: no item id or title of --data {_ds_name(ds)} "
                         "matches")
    note = "" if hits.size == 1 else f" (the most rated of {hits.size} titles matching " \
                                     f"{text!r})"
    return int(hits[0]), note


def _cmd_similar(args):
    out = _output_path(args)
    ds = _load_data(args)
    if args.k >= ds.X.shape[1]:
        raise UsageError(f"-k {args.k}: expected at most the number of items less one, "
                         f"{ds.X.shape[1] - 1}")
    col, note = _find_item(args.item, ds)
    _check_model_options(args, [args.model])
    model = _make_model(args.model, args)
    fit_s = _fit(args, model, ds)
    ids, scores = model.similar_items([col], k=args.k)
    frame = ds.to_frame(ids, scores)
    if out is not None:
        _write_frame(out, frame)
    item = {"item_id": _plain(ds.item_ids[col]), "title": _title(ds, col),
            "ratings": int((ds.X.indices == col).sum())}
    payload = {"data": args.data, "model": type(model).__name__, "item": item,
               "fit_seconds": round(fit_s, 3),
               "similar": [{k: _plain(v) for k, v in r.items()}
                           for r in frame.to_dict("records")]}
    text = (f"{type(model).__name__} ({model.item_factors_.shape[1]} factors, fitted on {args.data} in "
            f"{fit_s:.1f} s): the {len(frame)} items most similar to {item['title']} "
            f"(id {item['item_id']}, {item['ratings']} ratings){note}:\n"
            + format_table(_list_rows(frame, "similarity"), digits=3))
    if out is not None:
        text += f"\nwritten: {out}"
    _emit(args, payload, text)
    return 0


# --------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args):
    import numpy as np

    from .model_selection import evaluate, train_test_split_interactions

    is_100k = args.data in ("ml-100k", "100k")
    if args.folds:
        folds = ["u1", "u2", "u3", "u4", "u5"] if args.folds == "all" else \
            [f.strip() for f in args.folds.split(",") if f.strip()]
        bad = [f for f in folds if f not in ("u1", "u2", "u3", "u4", "u5", "ua", "ub")]
        if bad or not folds:
            raise UsageError(f"--folds {args.folds!r}: expected folds among u1..u5, ua, ub, "
                             "or 'all'")
        if not is_100k:
            raise UsageError(f"--folds: only ml-100k has official folds, not --data "
                             f"{args.data!r} (use --test-size)")
    else:
        folds = ["u1"] if is_100k else [None]
    splits = []
    for fold in folds:
        if fold is None:
            ds = _load_data(args)
            X_train, X_test = train_test_split_interactions(ds.X, test_size=args.test_size,
                                                            random_state=args.seed)
            splits.append((f"per-user random {1 - args.test_size:.0%}/{args.test_size:.0%}",
                           X_train, X_test))
        else:
            ds = _load_data(args, fold=fold)
            splits.append((fold, ds.X_train, ds.X_test))
    topk = [m for m in args.metrics if m in _TOPK_METRICS]
    _check_model_options(args, args.models)
    per_model = {}
    for name in args.models:
        runs = []
        for split_name, X_train, X_test in splits:
            model = _make_model(name, args)
            _check_rank(name, model.n_components, X_train)
            _status(args, f"{split_name}: fitting {type(model).__name__}")
            t0 = time.perf_counter()
            model.fit(X_train)
            fit_s = time.perf_counter() - t0
            # RMSE and MAE only for models whose predictions are ratings.
            metrics = [m for m in args.metrics if m in topk or model._predicts_ratings()]
            t0 = time.perf_counter()
            res = evaluate(model, X_train, X_test, metrics=tuple(metrics), k=args.k,
                           relevance_threshold=args.relevance_threshold, fit=False)
            res["fit_s"], res["eval_s"] = fit_s, time.perf_counter() - t0
            runs.append(res)
        per_model[name] = (type(model).__name__, runs)

    rows, payload = [], {"data": args.data, "folds": [s[0] for s in splits], "k": args.k,
                         "relevance_threshold": args.relevance_threshold, "models": {}}
    for cls_name, runs in per_model.values():
        row = {"model": cls_name}
        entry = {"per_fold": runs, "mean": {}, "std": {}}
        for m in [*args.metrics, "fit_s"]:
            vals = np.array([r.get(m, np.nan) for r in runs], dtype=float)
            mean = float(np.mean(vals))
            entry["mean"][m] = mean
            entry["std"][m] = float(np.std(vals)) if len(vals) > 1 else None
            label = f"{m}@{args.k}" if m in topk and m != "coverage" else m
            if m == "fit_s":
                row[label] = f"{mean:.2f}"
            elif len(vals) > 1 and not np.isnan(mean):
                row[label] = f"{mean:.4f} ± {np.std(vals):.4f}"
            else:
                row[label] = mean
        row["users"] = int(runs[0]["n_users"])
        rows.append(row)
        payload["models"][cls_name] = entry
    where = (f"official fold{'s' if len(folds) > 1 else ''} {','.join(folds)} "
             "(train uX.base, test uX.test)" if folds[0] else f"{splits[0][0]} split of the "
             f"ratings (seed {args.seed})")
    relevant = ("a test rating" if args.relevance_threshold is None
                else f"a test rating >= {args.relevance_threshold:g}")
    head = (f"{args.data}, {where}{', mean ± sd over folds' if len(splits) > 1 else ''}.\n"
            f"Top-{args.k} lists exclude training items; users with {relevant} are "
            "evaluated; RMSE/MAE over all test ratings; fit_s in seconds.")
    _emit(args, payload, head + "\n" + format_table(rows))
    return 0


# --------------------------------------------------------------------------- bench
def _cmd_bench(args, extra):
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "run.py").is_file():
        raise UsageError(
            "the benchmarks/ suite is not part of the installed package: clone the sksvd "
            "repository and run `make bench` (or `sksvd bench`) from the checkout"
        )
    if extra and extra[0] == "--":
        extra = extra[1:]
    cmd = [sys.executable, "-m", "benchmarks.run", *extra]
    if args.device is not None:
        device = args.device
        if device == "auto":  # the device the benchmarks' own "auto" would pick
            from ._backend import resolve_device

            device = str(resolve_device("auto"))
        cmd += ["--device", device]
    _status(args, " ".join(["python", *cmd[1:]]) + f"  (in {root})")
    return subprocess.call(cmd, cwd=root)


# --------------------------------------------------------------------------- entry point
_COMMANDS = {"compress": _cmd_compress, "decompress": _cmd_decompress,
             "recommend": _cmd_recommend, "similar": _cmd_similar, "evaluate": _cmd_evaluate}


def _check_unknown_options(parser, argv):
    """Name an unknown ``--option`` of a subcommand before argparse checks anything else.

    argparse reports a missing required option (``one of --user --rated is
    required``) before the unknown ones, so a misspelt ``--ratd`` would read
    as a missing ``--rated``; this names it, with the closest known option.
    ``bench`` passes unknown options on to the suite and is left alone.
    """
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    pos = next((i for i, t in enumerate(argv) if not t.startswith("-")), None)
    if pos is None or argv[pos] not in sub.choices or argv[pos] == "bench":
        return
    p = sub.choices[argv[pos]]
    known = [o for o in p._option_string_actions if o.startswith("--")]
    for token in argv[pos + 1:]:
        if token == "--":
            return
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        if name in known or sum(o.startswith(name) for o in known) == 1:
            continue  # an option, or an abbreviation argparse accepts
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        p.error(f"unrecognized argument: {name}{hint}")


def main(argv=None):
    """Run the ``sksvd`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on bad usage, 1 when the work failed.

    Examples
    --------
    >>> from sksvd.cli import main
    >>> main(["compress", "no_such_file.png", "--rank", "5"])
    2
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_unknown_options(parser, argv)
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    prog = f"{PROG} {args.command}"
    with warnings.catch_warnings():
        if not args.verbose:
            # One line per warning (e.g. a data file that differs from the official
            # release); catch_warnings restores warnings.showwarning on return.
            def _one_line(message, category, filename, lineno, file=None, line=None):
                print(f"{prog}: warning: {message}", file=sys.stderr)

            warnings.showwarning = _one_line
        return _run(args, extra, prog)


def _run(args, extra, prog):
    """Run the parsed command; usage errors give 2, failures of the work 1."""
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        if args.command == "bench":
            return _cmd_bench(args, extra)
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        return _COMMANDS[args.command](args)
    except (UsageError, InvalidParameterError) as exc:
        # The command line's and scikit-learn's argument checks name the argument.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"{prog}: failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
