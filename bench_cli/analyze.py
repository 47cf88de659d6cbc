"""`bench analyze decomposition`: Stay-Positive's eq. 1 split of trained detectors' logits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.api import BenchError
from bench_cli.args import Command, count, csv_list, echo, torch_device
from detectors.mini import stay_positive_pairs  # a plain table: no torch at start-up


def _add_analyze(p: argparse.ArgumentParser) -> None:
    default = stay_positive_pairs()
    p.add_argument("analysis", choices=["decomposition"], help="decomposition: real-score / fake-score split of the logit (Stay-Positive eq. 1)")
    p.add_argument("--suite", default="mini", help="suite whose images are decomposed (default: %(default)s)")
    p.add_argument("--detectors", type=csv_list, default=list(default),
                   help=f"comma-separated detectors with a linear head on pooled features (default: {','.join(default)})")
    p.add_argument("--max-per-set", type=count(1), default=40, help="first N images of each set (default: %(default)s)")
    p.add_argument("--data-root", help="the suite's data (as for bench run)")
    p.add_argument("--out", type=Path, default=Path("results/analysis"),
                   help="writes <out>/decomposition-<detector>/ (default: %(default)s)")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def _analyze(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.images import write_failures
    from bench.registry import check_detector_name
    from detectors.decomposition import decompose, plot_decomposition

    if not args.detectors:
        raise BenchError("--detectors names no detector")
    for name in args.detectors:  # every name, before hours of work on the first
        check_detector_name(name)
    suite = registry.get_suite(args.suite).load(args.data_root, args.max_per_set)
    for name in args.detectors:
        det = registry.create_detector(name)
        errors: dict[str, str] = {}
        df = decompose(det, suite.records, device=args.device, errors=errors)
        out = args.out / f"decomposition-{det.info.name}"
        out.mkdir(parents=True, exist_ok=True)
        listed = write_failures(out, errors.items())
        if df.empty:
            raise BenchError(f"{det.weights}: no image of suite {args.suite!r} could be read; see {listed or 'the suite'}")
        df.to_csv(out / "decomposition.csv", index=False)
        if listed:
            print(f"bench: {len(errors)} image(s) could not be read and were skipped; see {listed}", file=sys.stderr)
        figs = plot_decomposition(df, out, title=f"{det.info.display_name} ({det.weights})")
        for old in set(out.glob("decomposition_*.png")) - set(figs):  # sets of an earlier run, gone from the data
            old.unlink()
        summary = df.groupby(["set", "label"])[["fake_score", "real_score", "logit"]].mean().round(3)
        echo(f"== {det.info.display_name}\n{summary.to_string()}\n" + "\n".join(f"figure: {f}" for f in figs))
    return 0


COMMAND = Command("analyze", "Stay-Positive analyses of trained detectors", _add_analyze, _analyze)
