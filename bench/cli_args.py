"""What both command-line modules share: the `Command` record, argparse types that refuse bad
values when the command line is read (not minutes into a run), and `echo` for results.

`bench/cli.py` holds the harness commands and `bench/cli_methods.py` the methods' commands
(world, train, dear, analyze, reproduce); both build on this module.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from bench.api import BenchError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def count(minimum: int) -> Any:
    """argparse type: an integer of at least `minimum`, refused when the command line is read."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"
    return parse


def nonnegative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def echo(msg: str = "") -> None:
    """A result line on stdout, flushed so it interleaves correctly with progress on stderr."""
    print(msg, flush=True)


def torch_device(text: str) -> str:
    """--device: checked against this machine when the command line is read."""
    from bench.devices import resolve_device

    try:
        return resolve_device(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
