"""The `bench` command line: the face of aigi-bench, and the one package that knows every part.

The core (`bench/`) knows none of `detectors/`, `dear/`, `suites/`; they reach it through entry
points. Something has to wire them into commands (`bench dear prune` needs DEAR, `bench world`
needs AIGI-mini), and that is this package alone: nothing imports it, so it is a leaf of the
import graph (`python benchmarks/import_graph.py` prints the graph). It is a top-level package
rather than `bench/cli/` so that "the core imports no part" holds for the installed `bench`
package as a whole, not only for its modules.

Every command, at every level, is a `bench_cli.args.Command`; `COMMANDS` lists the top level.
Any `BenchError` prints `bench: error: <message>` on stderr and exits with status 2, without a
traceback, also when it was raised in a DataLoader worker (a plugin's own error classes too).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from bench.api import BenchError
from bench_cli import analyze, dear, harness, probe, reproduce, train, weights, world
from bench_cli.args import EXIT_ERROR, Command, add_commands

__all__ = ["COMMANDS", "Command", "build_parser", "main", "worker_message"]

COMMANDS = [*harness.COMMANDS, world.COMMAND, train.COMMAND, dear.COMMAND, probe.COMMAND, analyze.COMMAND, reproduce.COMMAND, weights.COMMAND]
RESUMABLE = ("run", "sweep")  # commands whose finished work is saved as it comes


def build_parser(commands: Sequence[Any] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark AI-generated-image detectors.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(sub, list(commands if commands is not None else COMMANDS))
    return parser


def worker_message(text: str) -> str | None:
    """The message of a BenchError raised in a DataLoader worker, without the worker traceback
    that torch wraps around it ("Caught X in DataLoader worker process 0. Original Traceback
    ... module.ErrorClass: message"); None when the error is not a BenchError (a real bug keeps
    its traceback). The class is looked up by its qualified name, so a plugin's errors count."""
    if "in DataLoader worker process" not in text:
        return None
    lines = text.splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not frames:
        return None
    i = frames[-1] + 1
    while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):  # the frame's code and carets
        i += 1
    qualified, sep, message = "\n".join(lines[i:]).partition(": ")
    if not sep or not _is_bench_error(qualified.strip()):
        return None
    return message.rstrip()


def _is_bench_error(qualified: str) -> bool:
    import importlib

    module, _, name = qualified.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except Exception:  # not importable here: not one we can vouch for
        return False
    return isinstance(cls, type) and issubclass(cls, BenchError)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings as one line for a user ("bench: warning: ..."), not Python's file:line and source."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    print(f"bench: warning: {kind}{message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    logging.basicConfig(level=logging.WARNING, format="bench: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return args._handler(args)
    except BenchError as exc:
        print(f"bench: error: {worker_message(str(exc)) or exc}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as exc:  # a BenchError that a DataLoader worker could not rebuild (BadImageError)
        message = worker_message(str(exc))
        if message is None:
            raise
        print(f"bench: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        resumes = args._command in RESUMABLE  # only scores are cached as they come
        print("bench: interrupted" + ("; finished batches are saved and a rerun resumes from them" if resumes else ""),
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bench table | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # an output path that is a file, a full disk: the OS message names the path
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = shown
