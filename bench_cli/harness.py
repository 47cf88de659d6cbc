"""The harness commands: list, run, table, plot, sweep, compare, speed.

They read only the core (`bench`): everything goes through `bench.registry`, so built-ins and
plugins are listed and run the same way. A run where some detector failed still exports what
finished, then exits with 1; `bench compare` exits with 1 when the runs differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from bench import registry
from bench.api import BenchError, did_you_mean
from bench.devices import PRECISIONS
from bench_cli.args import EXIT_ERROR, EXIT_FAILED_DETECTOR, EXIT_MISMATCH, Command, count, csv_list, echo, key_value, nonnegative, size, torch_device

# --------------------------------------------------------------------------- list


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="data folder used to check whether suites are available")
    p.add_argument("-v", "--verbose", action="store_true", help="print the full reason a suite or a detector's backbone is unavailable")


def _cmd_list(args: argparse.Namespace) -> int:
    """Detectors with their weight tags, suites with availability, chains, and broken plugins."""
    from tabulate import tabulate

    from bench import weights

    det_rows, problems = [], []
    report = registry.scan("detectors")
    for name, spec in sorted(report.loaded.items()):
        if isinstance(spec, registry.DetectorSpec):
            info = spec.info
            tags = ", ".join(
                f"{w.tag}{'*' if w.tag == spec.default_weights else ''} ({weights.status(name, w)})" for w in spec.weights
            ) or "-"
            try:
                needs = spec.missing()
            except Exception as exc:  # a plugin's check must not hide the listing
                needs = f"requirement check failed: {type(exc).__name__}: {exc}"
            if needs:
                tags += "; " + (needs if args.verbose else needs.split(". ")[0].rstrip(".") + " (-v: details)")
        else:
            try:
                info = registry.detector_info(name)
            except BenchError as exc:
                problems.append(("detector", name, str(exc)))
                continue
            tags = "plugin (no tags)"
        det_rows.append([name, info.display_name, info.family, info.input.describe(), tags, report.origin.get(name, "")])
    echo("Detectors (* = default weights; local/bundled = on this machine, download = fetched on first use):")
    echo(tabulate(det_rows, headers=["name", "display", "family", "input", "weights", "from"]) if det_rows else "  none")

    suite_rows = []
    for name, source in sorted(registry.scan("suites").loaded.items()):
        try:
            missing = source.availability(args.data_root)
        except Exception as exc:  # a plugin's availability check must not hide the others
            missing = f"availability check failed: {type(exc).__name__}: {exc}"
        if missing and not args.verbose:
            missing = missing.strip().split("\n")[0].split(". ")[0].rstrip(".") + " (-v: details)"
        suite_rows.append([name, getattr(source, "weights_tag", None) or "-", "available" if not missing else missing,
                           getattr(source, "description", "")])  # fmt: skip
    echo("\nSuites:")
    echo(tabulate(suite_rows, headers=["name", "weights", "status", "description"], maxcolwidths=[None, None, 50, 50]) if suite_rows else "  none")

    chain_rows = []
    for name, factory in sorted(registry.scan("chains").loaded.items()):
        doc = (getattr(factory, "__doc__", None) or "").strip().split("\n\n")[0]
        params = registry.chain_parameters(factory)
        shown = "?" if params is None else ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default}" for p in params)
        chain_rows.append([name, shown or "-", " ".join(doc.split())])
    echo("\nPost-processing chains (combine with '+', set values with ':key=value,...'):")
    echo(tabulate(chain_rows, headers=["name", "parameters", "description"], maxcolwidths=[None, 30, 80]) if chain_rows else "  none")

    for kind in registry.GROUPS:
        errors = registry.scan(kind).errors
        problems += [(kind[:-1], name, why) for name, why in sorted(errors.items())]
        problems += [(kind[:-1], name, why) for name, why in sorted(registry.refused(kind).items()) if name not in errors]
    if problems:
        echo("\nPlugins that failed to load:")
        echo(tabulate(problems, headers=["kind", "name", "error"]))
    return 0


# --------------------------------------------------------------------------- run / sweep


def _add_run_options(p: argparse.ArgumentParser, post: bool = True) -> None:
    p.add_argument("--suite", required=True, help="suite name (see `bench list`)")
    p.add_argument("--detectors", type=csv_list, default=[], help="comma-separated names, optionally with a weight tag: corvi,rajan.official "
                   "(default: every detector with the suite's weights)")  # fmt: skip
    if post:
        p.add_argument("--post-process", action="store_true", help="also score the post-processed images")
        p.add_argument("--processed-copies", action="store_true",
                       help="the post-processed block is the suite's stored copies (DEAR's test_processed/), not a chain")
        p.add_argument("--chain", help="post-processing chain spec for --post-process (default: rajan)")
    else:
        p.add_argument("--chain", required=True, help="post-processing chain spec whose last step takes the swept parameter, e.g. webp")
    p.add_argument("--fakes-only", action="store_true", help="post-process fakes only (Stay-Positive protocol); reals keep their original score")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-image post-processing draws (default: 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder holding cache.sqlite and run folders (default: results)")
    p.add_argument("--run-name", help="run folder name (default: the suite name)" if post else
                   "run folder name (default: <suite>-sweep-<chain>-<param>, -fakes-only added with --fakes-only)")
    p.add_argument("--device", type=torch_device, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=count(1), default=32)
    p.add_argument("--workers", type=count(0), help="DataLoader worker processes (default: one per available CPU, at most 8)")
    p.add_argument("--pixel-budget", type=count(1), help="pixels per batch: large native-resolution images go in smaller "
                   "batches (default: 16 x 1024^2 on CUDA, DEAR's loader; 4 x 1024^2 on CPU)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="CUDA numerics: fp32 (TF32 off, matches CPU), tf32 (PyTorch's GPU default) or bf16 autocast; CPU runs fp32")
    p.add_argument("--amp", dest="precision", action="store_const", const="bf16", help="shorthand for --precision bf16")
    p.add_argument("--max-per-set", type=count(1), help="score a seeded sample of at most this many images per set "
                   "(per label in a set holding both), stratified by source folder; --seed draws it")
    p.add_argument("--data-root", help="where the suite's data lives (suite-specific)")
    p.add_argument("--detector-option", dest="detector_options", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="a builder option for every selected detector that takes it, e.g. tile=false (Corvi/Rajan/DEAR: "
                   "score large images whole, as the ClipBased/AlignedForensics code does), resize=false (NPR at native "
                   "size, its no_resize protocol); repeatable; rows are labelled with it")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="let a CSV manifest name files outside its own folder (refused by default)")
    p.add_argument("--max-pixels", type=count(1), help=f"largest image accepted, in pixels (default {2**28:,} = 16384 x 16384; "
                   "a guard against decompression bombs)")
    p.add_argument("--shard", help="K/N: score only shard K of N of the images (default: the shard torchrun or SLURM "
                   "assigns, else all; 'all' ignores the launcher); the last shard to finish merges, or run `bench merge`")
    p.add_argument("--save-processed", type=Path, metavar="DIR",
                   help="also write the post-processed images of each chain condition to DIR/<condition>/ as PNG files, "
                   "with a manifest.csv (path,label,set,source,params) that `--suite folder --data-root` reads")


def _config(args: argparse.Namespace) -> Any:
    from bench.runner import RunConfig

    post_process = getattr(args, "post_process", False)
    if args.chain and "post_process" in args and not post_process:  # `run`: a chain nobody applies is a mistake
        raise BenchError(f"--chain {args.chain!r} applies to the post-processed block: add --post-process")
    return RunConfig(
        suite=args.suite, detectors=args.detectors, post_process=post_process, chain=args.chain or "rajan",
        fakes_only=args.fakes_only, seed=args.seed, out=args.out, run_name=args.run_name, device=args.device,
        batch_size=args.batch_size, workers=args.workers, precision=args.precision, max_per_set=args.max_per_set, data_root=args.data_root,
        processed_copies=getattr(args, "processed_copies", False), detector_options=dict(args.detector_options),
        allow_outside_root=args.allow_outside_root, max_pixels=args.max_pixels, pixel_budget=args.pixel_budget, shard=args.shard,
        save_processed=args.save_processed,
    )  # fmt: skip


def _render_table(scores: Any, fmt: str = "markdown", metrics: Sequence[str] | None = None, sets: Sequence[str] | None = None,
                 bootstrap: int = 0) -> str:  # fmt: skip
    from bench.metrics import evaluate
    from bench.tables import render

    kwargs: dict[str, Any] = {"format": fmt, "sets": sets}
    if metrics:
        kwargs["metrics"] = metrics
    return render(evaluate(scores, bootstrap=bootstrap), **kwargs)


def _finish(result: Any) -> int:
    """The terminal summary table, the run folder, what could not be scored and why (exit 1
    when a detector did not finish or produced nothing, 2 when nothing at all was scored)."""
    if "shard" in result.manifest and not result.written:  # a shard that did its part; another merges
        computed = sum(s["computed"] for s in result.manifest["counts"]["per_detector"])
        echo(f"shard {result.manifest['shard']}: {computed} score(s) computed; shards done: "
             f"{', '.join(map(str, result.manifest['shards_done']))}")
        for name, why in result.errors.items():
            print(f"bench: {name} did not finish in this shard: {why}", file=sys.stderr)
        return EXIT_FAILED_DETECTOR if result.errors else 0
    table_error = None
    if not result.scores.empty:
        try:
            echo(_render_table(result.scores, "text"))
        except BenchError as exc:  # the scores are saved; only the summary table failed
            table_error = exc
        echo(f"run: {result.run_dir} (full table: bench table --run {result.run_dir})")
    for line in failure_summary(result):
        print(f"bench: {line}", file=sys.stderr)
    if result.errors:
        print("bench: these detectors did not finish; mend the reason below and rerun the same command "
              "(finished scores are saved and reused):", file=sys.stderr)
        for name, why in result.errors.items():
            print(f"  {name}: {why}", file=sys.stderr)
    if result.scores.empty:  # e.g. every image failed to decode: nothing to report is not a success
        print("bench: error: no image was scored in this run" + ("" if result.written else
              f"; {result.run_dir} was left as it was"), file=sys.stderr)
        return EXIT_ERROR
    if result.errors:
        return EXIT_FAILED_DETECTOR
    if table_error is not None:
        print(f"bench: error: no table for this run: {table_error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def failure_summary(result: Any) -> list[str]:
    """Lines counting files, not file x detector x condition: how many files a source skipped,
    how many could not be scored, and how that splits per condition and per detector."""
    lines = []
    f = result.failures
    listed = result.run_dir / "failures.csv" if result.written else "the run's failures"
    if len(f):
        skipped = f[f["detector"] == "-"]
        if len(skipped):
            reasons = skipped["reason"].str.replace(r" \(.*$", "", regex=True).value_counts()
            lines.append(f"{len(skipped)} file(s) of the suite were skipped ({'; '.join(f'{n} {r}' for r, n in reasons.items())}); "
                         f"see {listed}")
        failed = f[f["detector"] != "-"]
        if len(failed):
            per_cond = "; ".join(f"{c}: {g['path'].nunique()}" for c, g in failed.groupby("condition", sort=False))
            per_det = "; ".join(f"{d}: {g['path'].nunique()}" for d, g in failed.groupby("weights", sort=False))
            lines.append(f"{failed['path'].nunique()} file(s) could not be scored (by condition: {per_cond}; by detector: "
                         f"{per_det}); see {listed}")
            if not result.written:  # no failures.csv to look in: show a few here
                lines += [f"  {r.path}: {r.reason}" for r in failed.drop_duplicates("path").head(3).itertuples()]
    sampled = (result.manifest.get("suite") or {}).get("sampled") if result.manifest else None
    if sampled:
        kept = sum(x["kept"] for x in sampled["sets"])
        total = sum(x["total"] for x in sampled["sets"])
        strata = max(x["strata"] for x in sampled["sets"])
        lines.append(f"--max-per-set {sampled['max_per_set']}: kept {kept} of {total} images in {len(sampled['sets'])} set(s), "
                     f"a sample drawn with seed {sampled['seed']}, stratified by source folder (up to {strata} per set)")
    return lines


def _add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results"), help="the output folder the shards wrote to (default: results)")
    p.add_argument("--run-name", required=True, help="the run to merge (its suite name, or the --run-name the shards were given)")
    p.add_argument("--shards", type=count(1), help="the N of the split to merge (default: the largest N that left markers)")


def _cmd_merge(args: argparse.Namespace) -> int:
    """Import every shard store and write the run folder, computing nothing."""
    from bench.runner import merge

    return _finish(merge(args.out, args.run_name, count=args.shards))


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import run

    return _finish(run(_config(args)))


def _add_sweep(p: argparse.ArgumentParser) -> None:
    _add_run_options(p, post=False)
    p.add_argument("--param", required=True, help="the chain parameter to vary, e.g. quality")
    p.add_argument("--values", type=csv_list, required=True, help="comma-separated values, e.g. 100,90,80,70")
    p.add_argument("--metric", default="ap", choices=["ap", "auc"], help="metric plotted against the parameter (default: ap)")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bench import plots
    from bench.runner import sweep, sweep_slug

    result = sweep(_config(args), args.chain, args.param, args.values)
    status = _finish(result)
    if not result.scores.empty:
        from bench.metrics import evaluate

        info = result.manifest["sweep"]
        x = {c["condition"]: c["value"] for c in info["conditions"]}
        stem = f"sweep_{sweep_slug(info['chain'])}_{args.param}_{args.metric}"
        xlabel = f"{args.param} of the {info['step']} step ({info['chain']})" if "+" in info["chain"] else args.param
        table = evaluate(result.scores)
        for set_name in plots.summary_sets(table):
            out = plots.summary_path(result.run_dir, stem, set_name)
            echo(f"figure: {plots.sweep_figure(table, args.param, args.metric, out_path=out, set_name=set_name, x=x, xlabel=xlabel)}")
    return status


# --------------------------------------------------------------------------- table / plot


def _add_source(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--suite", help="read the run folder <results>/<suite>")
    g.add_argument("--run", type=Path, help="read this run folder")
    p.add_argument("--results", type=Path, default=Path("results"), help="folder of run folders, used with --suite (default: results)")


def _run_dir(args: argparse.Namespace) -> Path:
    """--run, or <results>/<suite>; a --suite with no run folder is named with the run folders
    that are there (`bench run --run-name` and sweeps write other names)."""
    if args.run is not None:
        return args.run
    run_dir = args.results / args.suite
    if not (run_dir / "manifest.json").is_file() and args.results.is_dir():
        runs = sorted(p.name for p in args.results.iterdir() if (p / "manifest.json").is_file())
        if runs:
            raise BenchError(f"{run_dir}: no run here{did_you_mean(args.suite, runs)} (run folders in {args.results}: "
                             f"{', '.join(runs)}; pass --run for another)")
    return run_dir


def _add_table(p: argparse.ArgumentParser) -> None:
    from bench.tables import ALIASES, FORMATS

    _add_source(p)
    p.add_argument("--format", default="markdown", choices=[*FORMATS, *ALIASES],
                   help="latex, markdown (md), csv, html, or text (a terminal summary)")
    p.add_argument("--metrics", type=csv_list, help="metric columns per set, e.g. auc,racc,facc (default: auc,racc,facc)")
    p.add_argument("--sets", type=csv_list, help="only these sets as columns (generator or in-the-wild), e.g. ldm,flux16; Avg still covers every generator set")
    p.add_argument("--output", type=Path, help="write the table to this file instead of stdout")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for AUC confidence intervals (default: 0 = none)")


def _cmd_table(args: argparse.Namespace) -> int:
    """A table from stored scores only: nothing is recomputed."""
    from bench.rundir import load_run

    _, scores = load_run(_run_dir(args))
    text = _render_table(scores, args.format, args.metrics, args.sets, args.bootstrap)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text if text.endswith("\n") else text + "\n")
        echo(f"table: {args.output}")
    else:
        echo(text)
    return 0


def _add_plot(p: argparse.ArgumentParser) -> None:
    _add_source(p)
    p.add_argument("--out", type=Path, help="folder for the PNG figures (default: the run folder)")


def _cmd_plot(args: argparse.Namespace) -> int:
    """Score distributions per set (threshold at logit 0) and R.Acc/F.Acc bars before/after
    post-processing, from stored scores only."""
    from bench import plots
    from bench.metrics import evaluate
    from bench.rundir import load_run

    run_dir = _run_dir(args)
    _, scores = load_run(run_dir)
    out = args.out or run_dir
    paths = plots.score_distributions(scores, out)
    if scores["calibrated"].astype(bool).any():
        table = evaluate(scores)
        for set_name in plots.summary_sets(table):
            paths.append(plots.accuracy_bars(table, plots.summary_path(out, "accuracy_bars", set_name), set_name=set_name))
    else:
        print("bench: no calibrated detector in this run, so no accuracy bars (accuracies at logit 0 are not meaningful)", file=sys.stderr)
    for path in paths:
        echo(f"figure: {path}")
    return 0


def _add_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", type=Path, help="a run folder, e.g. results/cpu/mini")
    p.add_argument("run_b", type=Path, help="another run folder of the same suite, e.g. results/cuda/mini")
    p.add_argument("--atol", type=nonnegative, default=1e-3, help="largest logit difference accepted (default: 1e-3)")


def _cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when every score is in both runs and within --atol, else 1."""
    from bench.compare import compare_runs

    cmp = compare_runs(args.run_a, args.run_b)
    echo(cmp.summary())
    if not cmp.within(args.atol):
        if cmp.max_abs_diff > args.atol:
            echo(f"largest differences:\n{cmp.worst.to_string(index=False)}")
        if cmp.unmatched is not None and len(cmp.unmatched):
            echo(f"scored in one run only (first {len(cmp.unmatched)}):\n{cmp.unmatched.to_string(index=False)}")
        print(f"bench: the runs differ beyond atol={args.atol:g}", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


# --------------------------------------------------------------------------- speed


def _add_speed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detectors", type=csv_list, default=[],
                   help="comma-separated names with optional weight tag (default: every detector whose default weights are on this machine)")
    p.add_argument("--device", type=torch_device, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="CUDA numerics, as in `bench run` (default: fp32)")
    p.add_argument("--size", type=size, default=(256, 256), help="input image size, 256 or HxW (default: 256)")
    p.add_argument("--batch-size", type=count(1), default=32)
    p.add_argument("--batches", type=count(1), default=10, help="timed batches after warm-up (default: 10)")
    p.add_argument("--warmup", type=count(0), default=2, help="untimed warm-up batches (default: 2)")
    p.add_argument("--output", type=Path, help="also write the results as .csv or .json")


def _cmd_speed(args: argparse.Namespace) -> int:
    """Images/s of preprocessing (one CPU core) and forward (device), peak memory; exit 1 if a detector failed."""
    import pandas as pd
    from tabulate import tabulate

    from bench.selection import default_detector_names
    from bench.speed import measure_many

    names = args.detectors or default_detector_names(None)
    results, errors = measure_many(names, device=args.device, precision=args.precision, size=args.size,
                                   batch_size=args.batch_size, batches=args.batches, warmup=args.warmup)  # fmt: skip
    table = pd.DataFrame([r.as_row() for r in results])
    if not table.empty:
        echo(tabulate(table, headers="keys", showindex=False, floatfmt=".1f"))
    if args.output is not None and not table.empty:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.output.suffix == ".json":
            table.to_json(args.output, orient="records", indent=2)
        else:
            table.to_csv(args.output, index=False)
        echo(f"results: {args.output}")
    for name, why in errors.items():
        print(f"bench: {name} was not measured: {why}", file=sys.stderr)
    return EXIT_FAILED_DETECTOR if errors else 0


COMMANDS: list[Command] = [
    Command("list", "list detectors, suites, post-processing chains and broken plugins", _add_list, _cmd_list),
    Command("run", "score a suite and print its table", _add_run_options, _cmd_run),
    Command("table", "print a results table from stored scores", _add_table, _cmd_table),
    Command("plot", "write score-distribution and accuracy figures of a run", _add_plot, _cmd_plot),
    Command("sweep", "score a suite under one chain parameter at several values and plot AP/AUC", _add_sweep, _cmd_sweep),
    Command("compare", "compare two runs score by score (e.g. CPU against CUDA)", _add_compare, _cmd_compare),
    Command("merge", "merge the shards of a sharded run into its run folder (computes nothing)", _add_merge, _cmd_merge),
    Command("speed", "measure detectors' images/s and peak memory on a device (a benchmark)", _add_speed, _cmd_speed),
]
