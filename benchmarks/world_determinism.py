"""Does the AIGI-mini world come out byte for byte the same on other CPUs?

Builds the world once per ATen CPU kernel set (`ATEN_CPU_CAPABILITY=default|avx2|avx512`, the
kernels torch would pick on a CPU without vector units, with AVX2, with AVX-512) in separate
processes, and compares the sha256 of every file. Optionally (--generators) also re-runs each
generator on a few crops in float32 and in float64 under each kernel set, which is why the world
is generated in float64 (`suites.mini.generators.load_generator`).

    python benchmarks/world_determinism.py [--reduced] [--out DIR] [--generators]

Only capabilities this CPU supports can be tried; the others are skipped with a note.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CAPABILITIES = ("default", "avx2", "avx512")

GENERATOR_PROBE = r"""
import hashlib, json, random, sys, torch
from suites.mini import generators as gens, photos
torch.set_num_threads(1)
out = {"capability": str(torch.backends.cpu.get_cpu_capability())}
for dtype in (torch.float32, torch.float64):
    digest = hashlib.sha256()
    for g in gens.GENERATORS:
        model = gens.load_generator(g.name, dtype=dtype)
        for i in range(6):
            digest.update(gens.generate(model, photos.sample_crop("test", "content", random.Random(i)).image()).tobytes())
    out[str(dtype).split(".")[1]] = digest.hexdigest()
print(json.dumps(out))
"""


def _env(capability: str) -> dict[str, str]:
    return {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": "1"}


def build(capability: str, root: Path, reduced: bool) -> dict:
    cmd = [sys.executable, "-m", "bench", "world", "build", "--force", "--root", str(root), *(["--reduced"] if reduced else [])]
    proc = subprocess.run(cmd, env=_env(capability), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{capability}: world build failed:\n{proc.stderr[-2000:]}")
    manifest = json.loads((root / "manifest.json").read_text())
    return {"files": manifest["files"], "environment": manifest.get("environment", {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="the small test world (seconds) instead of the full one")
    parser.add_argument("--out", type=Path, help="where to build (default: a temporary folder, removed)")
    parser.add_argument("--generators", action="store_true", help="also compare float32 against float64 generation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        if args.generators:
            for cap in CAPABILITIES:
                proc = subprocess.run([sys.executable, "-c", GENERATOR_PROBE], env=_env(cap), capture_output=True, text=True)
                print(f"generators under {cap}: {proc.stdout.strip() or proc.stderr.strip()[-300:]}")
        worlds = {}
        for cap in CAPABILITIES:
            worlds[cap] = build(cap, out / f"world-{cap}", args.reduced)
            print(f"{cap}: {len(worlds[cap]['files'])} files, kernels {worlds[cap]['environment'].get('torch_cpu_capability')}")
        ref = worlds[CAPABILITIES[0]]["files"]
        for cap in CAPABILITIES[1:]:
            files = worlds[cap]["files"]
            differ = sorted(k for k in ref if files.get(k) != ref[k])
            print(f"{CAPABILITIES[0]} vs {cap}: {len(ref) - len(differ)} of {len(ref)} files identical"
                  + (f"; differ: {', '.join(differ[:10])}" if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
