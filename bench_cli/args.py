"""What every command module shares: the `Command` record, exit codes, argparse types that
refuse bad values when the command line is read (not minutes into a run), and `echo`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from bench.api import BenchError

EXIT_FAILED_DETECTOR = 1  # a run exported what finished, but some detector did not finish
EXIT_MISMATCH = 1  # bench compare: the runs differ
EXIT_ERROR = 2  # a BenchError: the message says what to do


@dataclass(frozen=True)
class Command:
    """One (sub)command: `bench <name> ...`. A command with `subcommands` is a group
    (`bench dear prune ...`): its own `add_arguments` and `handler` are then unused, and each
    subcommand is declared the same way, so every level of the tree reads alike."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    handler: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple["Command", ...] = ()


@dataclass(frozen=True)
class Options:
    """A group of options: how to declare them, and the keyword values they give a handler."""

    add: Callable[[argparse.ArgumentParser], None]
    read: Callable[[argparse.Namespace], dict[str, Any]]


def grouped(name: str, help: str, groups: tuple[Options, ...], handler: Callable[[argparse.Namespace, dict[str, Any]], int],
            extra: Callable[[argparse.ArgumentParser], None] | None = None) -> Command:
    """A command that declares exactly its option `groups` (plus `extra`) and calls
    `handler(args, values)` with what those groups read, so it never takes an option it ignores."""

    def add(p: argparse.ArgumentParser) -> None:
        for g in groups:
            g.add(p)
        if extra is not None:
            extra(p)

    def run(args: argparse.Namespace) -> int:
        values: dict[str, Any] = {}
        for g in groups:
            values.update(g.read(args))
        return handler(args, values)

    return Command(name, help, add, run)


def add_commands(sub: Any, commands: tuple[Command, ...] | list[Command], path: str = "") -> None:
    """Declare `commands` on an argparse subparsers object, recursing into groups; each leaf
    parser carries its handler, and `_command` names the full path ("dear prune")."""
    for cmd in commands:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        full = f"{path} {cmd.name}".strip()
        if cmd.subcommands:
            nested = p.add_subparsers(dest=f"_{full.replace(' ', '_')}", metavar="ACTION", required=True)
            add_commands(nested, cmd.subcommands, full)
            continue
        if cmd.add_arguments is not None:
            cmd.add_arguments(p)
        p.set_defaults(_handler=cmd.handler, _command=full)


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


def size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '512x384' -> (512, 384) as (H, W)."""
    try:
        h, _, w = text.lower().partition("x")
        value = (int(h), int(w or h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 256 or 512x384, got {text!r}") from None
    if min(value) < 1:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {text!r}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """'tile=false' -> ('tile', False): a builder option, its value read as a chain value is."""
    from bench.registry import parse_chain_value

    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_chain_value(value.strip())


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
