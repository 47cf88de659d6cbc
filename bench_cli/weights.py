"""`bench weights`: one-time conversions of official weight files the harness will not unpickle.

    bench weights convert-code linear_tot_classifier_epoch-32.sav    # -> <weights>/code/code-linear.safetensors

CoDE publishes its heads as scikit-learn pickles (joblib). Loading a pickle runs code from the
file, so detectors never do it; this command does, once, on a file the user trusts, and writes the
head's numbers to safetensors, which `code.<kind>` then reads (`detectors.clip.code`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.api import BenchError
from bench_cli.args import Command, echo


def _add_convert_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", type=Path, help="CoDE's .sav/.joblib head from huggingface.co/aimagelab/CoDE (sklearn/...); "
                   "UNPICKLED: runs code from the file, so only one you trust")  # fmt: skip
    p.add_argument("--out", type=Path, help="the .safetensors to write (default: <weights folder>/code/code-<kind>.safetensors, "
                   "where code.<kind> looks for it)")  # fmt: skip


def _convert_code(args: argparse.Namespace) -> int:
    from bench.weights import sha256_file
    from detectors.clip.catalog import CODE_TAGS
    from detectors.clip.code import ConversionError, convert

    if not args.src.is_file():
        raise BenchError(f"{args.src}: no such file")
    if args.out is not None and args.out.suffix != ".safetensors":
        raise BenchError(f"--out {args.out}: the converted head is written as .safetensors")
    print(f"bench: unpickling {args.src} (sha256 {sha256_file(args.src)}): this runs code from the file", file=sys.stderr)
    try:
        conv = convert(args.src, args.out)
    except ConversionError:
        raise
    except Exception as exc:  # joblib/pickle errors: a damaged file, or one from another scikit-learn
        raise BenchError(f"{args.src}: cannot be read as a scikit-learn estimator ({type(exc).__name__}: {str(exc)[:200]})") from exc
    echo(f"wrote {conv.path}: CoDE {conv.kind} head ({conv.meta['sklearn_class']}, {conv.meta['n_features']} features); "
         f"score with --detectors code.{CODE_TAGS[conv.kind]}")
    return 0


COMMAND = Command("weights", "convert official weight files that the harness will not unpickle", subcommands=(
    Command("convert-code", "convert a CoDE scikit-learn head (pickle) to safetensors, once, on a file you trust",
            _add_convert_code, _convert_code),
))
