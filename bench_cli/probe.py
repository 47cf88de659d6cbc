"""`bench probe embed | fit | transfer | remove-features | heads | explain`: the probe workbench
of Gaintseva et al. (arXiv 2406.15035) in `probes/`.

`embed` computes a suite's embeddings once through the runner's scoring loop; every other step
reads its folder (`--embeddings`), so fits are CPU seconds. Each step declares the option groups
it reads (as `bench dear` does), and checks its inputs before any heavy work.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench_cli.args import Command, Options, count, echo, grouped, positive, torch_device


def _add_common(q: argparse.ArgumentParser) -> None:
    q.add_argument("--embeddings", type=Path, required=True, help="a folder written by `bench probe embed`")
    q.add_argument("--condition", help="condition key of the embeddings to use: original (default), post-processed, or a key")
    q.add_argument("--seed", type=int, default=0, help="seed of the 7:3 train:test split (default 0)")
    q.add_argument("--out", type=Path, default=Path("results/probe"), help="output folder (default: %(default)s)")
    q.add_argument("--run-name", help="name of the run folder (default: made from the inputs)")


def _common(a: argparse.Namespace) -> dict[str, Any]:
    from probes.steps import Common

    return {"common": Common(a.embeddings, a.out, a.condition, a.seed, a.run_name)}


def _add_features(q: argparse.ArgumentParser) -> None:
    q.add_argument("--features", help="keep only these features: kept_features.csv of `remove-features`, or a file of indices")


COMMON = Options(_add_common, _common)
FEATURES = Options(_add_features, lambda a: {"features": a.features})


def _print(result: dict[str, Any]) -> None:
    table = result.pop("accuracy", None)
    echo(json.dumps(result, indent=1, default=str))
    if table is not None:
        echo(table.to_string())


# --------------------------------------------------------------------------- embed


def _add_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="mini", help="suite to embed (default: %(default)s)")
    p.add_argument("--encoder", required=True, help="clip:<backbone key> (e.g. clip:openai-vit-l-14) or a detector with a linear "
                   "head (corvi.mini, rajan.mini, npr.mini): its penultimate features")
    p.add_argument("--tap", help="CLIP: embed (projected, default), mean (mean-pooled last hidden state), heads (per-head "
                   "contributions); detectors: pooled")
    p.add_argument("--backbone", help="CLIP backbone file or folder (as the detectors' backbone=)")
    p.add_argument("--post-process", action="store_true", help="also embed the post-processed images (the --chain)")
    p.add_argument("--chain", default="rajan", help="post-processing chain (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/probe"), help="output folder; its cache.sqlite keeps the vectors")
    p.add_argument("--run-name", help="default: <suite>-<encoder>")
    p.add_argument("--device", type=torch_device)
    p.add_argument("--batch-size", type=count(1), default=32)
    p.add_argument("--workers", type=count(0))
    p.add_argument("--max-per-set", type=count(1))
    p.add_argument("--data-root")
    p.add_argument("--shard", help="K/N: embed only shard K of N of the images into its own store (default: the shard "
                   "torchrun or SLURM assigns, else all); then run once without it to gather the folder")


def _embed(args: argparse.Namespace) -> int:
    from probes.embed import EmbedConfig, embed
    from probes.spec import encoder_spec

    spec = encoder_spec(args.encoder, args.tap, args.backbone)
    config = EmbedConfig(args.suite, spec, args.post_process, args.chain, args.seed, args.out, args.run_name, args.device,
                         args.batch_size, args.workers, args.max_per_set, args.data_root, args.shard)
    res = embed(config)
    if res.shard:
        echo(f"shard {res.shard}: {res.computed} vector(s) computed; when every shard is done, run the same command "
             "with --shard all to write the folder (nothing is computed again)")
        return 1 if res.errors else 0
    echo(json.dumps({"folder": str(res.folder), "vectors": res.count, "computed": res.computed, "failures": res.failures,
                     "seconds": round(res.seconds, 1), "errors": res.errors}, indent=1))
    return 1 if res.errors else 0


# --------------------------------------------------------------------------- fit, transfer


def _add_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="the generator whose fakes (with the reals) train the probe")
    p.add_argument("--tag", help="weight tag of the probe (default: <encoder>-<generator>)")
    p.add_argument("--install", action="store_true", help="copy it to the weights folder, so `clip-lr.<tag>` is a detector")


def _fit(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    from probes.steps import fit_step

    _print(fit_step(kw["common"], args.train, tag=args.tag, install=args.install, features=kw["features"]))
    return 0


def _add_transfer(p: argparse.ArgumentParser) -> None:
    from probes.transfer import METHODS

    p.add_argument("--method", choices=METHODS, default="lr", help="lr: the paper's logistic regression; residual: residual vectors")
    p.add_argument("--groups", help="generator groups for block averages, e.g. 'gan=tconv,shuffle;diffusion=ldm,flux16,vq'")
    p.add_argument("--train-condition", help="train under this condition instead of --condition (e.g. original, test post-processed)")


def _transfer(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    from probes.steps import transfer_step

    _print(transfer_step(kw["common"], args.method, groups=args.groups, features=kw["features"],
                         train_condition=args.train_condition))
    return 0


def _add_removal(p: argparse.ArgumentParser) -> None:
    from probes.removal import COMBINE

    p.add_argument("--pair", required=True, type=lambda t: [x.strip() for x in t.split(",")], help="the search pair D1,D2")
    p.add_argument("--drop-per-step", type=count(1), default=1, help="features removed per step (default 1, the paper's)")
    p.add_argument("--max-removed", type=count(1), help="stop after removing this many (default: all but one)")
    p.add_argument("--combine", choices=COMBINE, default="kept-union",
                   help="kept-union (default: 'the union of the remaining lists') or removed-union (the intersection of the kept)")
    p.add_argument("--iters", type=count(1), default=100, help="gradient steps per warm-started fit (default %(default)s)")
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--groups", help="generator groups for block averages")


def _removal(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    from probes.steps import removal_step

    _print(removal_step(kw["common"], args.pair, drop_per_step=args.drop_per_step, max_removed=args.max_removed, combine_how=args.combine,
                        iters=args.iters, device=args.device, groups=args.groups))
    return 0


def _add_heads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="generator the per-head probes train on")
    p.add_argument("--val", required=True, help="generator they are ranked on (left out of the reported matrix)")
    p.add_argument("--top", type=count(1), default=3, help="heads kept (default %(default)s, the paper's)")
    p.add_argument("--C", type=positive, default=1.0, help="inverse regularisation of the per-head probes (default %(default)s)")
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--groups", help="generator groups for block averages")


def _heads(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    from probes.steps import heads_step

    _print(heads_step(kw["common"], args.train, args.val, top=args.top, C=args.C, device=args.device, groups=args.groups))
    return 0


def _add_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", type=Path, required=True,
                   help="a folder of `bench probe fit`, `transfer --method residual` or `heads`")
    p.add_argument("--top", type=count(1), default=10, help="nearest texts per direction (default %(default)s)")
    p.add_argument("--vocab-limit", type=count(1), default=5000, help="first N whole words of the tokenizer (default %(default)s)")
    p.add_argument("--phrases", type=Path, help="a text file, one phrase per line (e.g. Gandelsman et al.'s list)")
    p.add_argument("--out", type=Path, default=Path("results/probe"))
    p.add_argument("--run-name")
    p.add_argument("--device", type=torch_device, default="cpu")


def _explain(args: argparse.Namespace) -> int:
    from probes.steps import explain_step

    res = explain_step(args.source, args.out, k=args.top, vocab_limit=args.vocab_limit, phrases=args.phrases,
                       run_name=args.run_name, device=args.device)
    echo(json.dumps({k: v for k, v in res.items() if k != "table"}, indent=1))
    echo(res["table"].to_string(index=False))
    return 0


COMMAND = Command("probe", "the probe workbench of Gaintseva et al. (linear probes on frozen encoders)", subcommands=(
    Command("embed", "embed a suite with a frozen encoder (cached; every later step reads the folder)", _add_embed, _embed),
    grouped("fit", "fit the paper's logistic-regression probe on one generator; --install makes it detector clip-lr.<tag>",
          (COMMON, FEATURES), _fit, _add_fit),
    grouped("transfer", "train on each generator, test on every generator: accuracy/AUC matrix, CSV and heat map",
          (COMMON, FEATURES), _transfer, _add_transfer),
    grouped("remove-features", "greedy feature removal on a search pair, both ways; transfer matrix with the kept features",
          (COMMON,), _removal, _add_removal),
    grouped("heads", "rank attention heads by a probe on each one's contribution; transfer matrix of the top heads",
          (COMMON,), _heads, _add_heads),
    Command("explain", "nearest vocabulary tokens and phrases to a probe's weight, residual vectors or selected heads",
            _add_explain, _explain),
))
