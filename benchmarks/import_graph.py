"""Print the import graph between aigi-bench's packages, check it against the house rules, and
time what a few commands import.

    python benchmarks/import_graph.py            # graph, rule check, line counts
    python benchmarks/import_graph.py --times    # also: import time and torch/timm of commands

The graph is read from the source (every `import`, at module level or inside a function), so a
lazy import counts: it is still a dependency. Exit status 1 when a rule is broken.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "bench_cli", "detectors", "dear", "suites", "probes")
# Who may import whom (DESIGN): the core knows no part, the face knows all, parts know the core.
ALLOWED: dict[str, set[str]] = {
    "bench": set(),
    "detectors": {"bench"},
    "suites": {"bench"},
    "dear": {"bench", "detectors", "suites"},
    "probes": {"bench", "detectors", "suites"},
    "bench_cli": {"bench", "detectors", "dear", "suites", "probes"},
}


def _package_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imports_of(path: Path) -> set[str]:
    """Every module named by an import statement in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the modules of `package` that import it."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for imported in imports_of(path):
                target = _package_of(imported)
                if target and target != package:
                    edges[package][target].add(module)
    return edges


def line_counts() -> dict[str, int]:
    return {p: sum(len(f.read_text().splitlines()) for f in (ROOT / p).rglob("*.py")) for p in PACKAGES}


def command_imports(argv: list[str]) -> tuple[float, int, bool, bool]:
    """(total import seconds, modules, torch imported, timm imported) of `python -m bench <argv>`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bench", *argv], capture_output=True, text=True, cwd=ROOT)
    total, modules = 0, set()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            total += int(m.group(1))
            modules.add(m.group(2))
    return total / 1e6, len(modules), "torch" in modules, "timm" in modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", action="store_true", help="also time the imports of `bench list` and `bench dear prune`")
    args = parser.parse_args()
    edges = graph()
    broken = 0
    print("package imports (-> imported: importing modules)")
    for package in PACKAGES:
        targets = edges.get(package, {})
        print(f"{package}: {', '.join(sorted(targets)) or '(none)'}")
        for target, modules in sorted(targets.items()):
            bad = target not in ALLOWED[package]
            broken += bad
            print(f"  -> {target}{'  BROKEN RULE' if bad else ''}: {', '.join(sorted(modules))}")
    print("\nlines of Python per package:", ", ".join(f"{k} {v}" for k, v in line_counts().items()))
    if args.times:
        with tempfile.TemporaryDirectory() as tmp:
            import json

            import numpy as np

            rad = Path(tmp) / "rad.npz"
            meta = {"n_samples": 1, "n_batches": 1, "layer": "backbone.layer4", "detector": "corvi.mini", "data": "", "extra": {}}
            np.savez(rad, scores=np.linspace(-1, 1, 256), metadata=np.array(json.dumps(meta)))
            for argv in (["list"], ["dear", "prune", "--rad", str(rad), "--out", tmp]):
                runs = [command_imports(argv) for _ in range(3)]
                seconds = sorted(r[0] for r in runs)
                _, modules, torch_, timm_ = runs[0]
                print(f"bench {argv[0] if argv[0] == 'list' else ' '.join(argv[:2])}: imports {seconds[1]:.2f} s (median of 3; "
                      f"{seconds[0]:.2f}-{seconds[2]:.2f}), {modules} modules, torch {'yes' if torch_ else 'no'}, "
                      f"timm {'yes' if timm_ else 'no'}")
    print(f"\n{'rules hold' if not broken else f'{broken} broken rule(s)'}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
