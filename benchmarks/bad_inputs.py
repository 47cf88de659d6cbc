"""The bad-input matrix: every kind of troublesome file, scored by `bench run`, with its outcome.

    python benchmarks/bad_inputs.py [--out DIR] [--detector npr.mini]

Builds a folder suite (real/ and fake/probe/) holding one file of each kind beside a few good
images, runs `bench run --suite folder` on it in a subprocess (with a time limit: a hang is an
outcome too), and prints a Markdown table of what happened to each file: scored, a failure
with its reason, or skipped by the source with its reason. The README's matrix is its output.
"""
from __future__ import annotations

import argparse
import io
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, features


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb() -> bytes:
    """A 200-byte PNG whose header claims 100000 x 100000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def make_inputs(root: Path) -> dict[str, str]:
    """Write the probe files; returns file name -> the kind of input it is."""
    probe = root / "fake" / "probe"
    probe.mkdir(parents=True)
    kinds: dict[str, str] = {}

    def put(name: str, kind: str, data: bytes | None = None, image: Image.Image | None = None, fmt: str = "PNG", **kw) -> None:
        path = probe / name
        path.write_bytes(data if data is not None else _bytes(image, fmt, **kw))
        kinds[name] = kind

    good = _rgb(48, 40, 0)
    put("truncated.png", "truncated PNG", _bytes(good, "PNG")[:300])
    put("truncated.jpg", "truncated JPEG", _bytes(good, "JPEG", quality=90)[:-200])
    put("empty.png", "zero-byte file", b"")
    put("text.png", "not an image (text named .png)", b"hello, not a picture\n")
    put("cmyk.jpg", "CMYK JPEG", image=good.convert("CMYK"), fmt="JPEG")
    put("palette.png", "P (palette) PNG", image=good.convert("P"))
    put("la.png", "LA (grey + alpha) PNG", image=good.convert("LA"))
    put("sixteen.png", "16-bit grey PNG", image=Image.fromarray((np.arange(48 * 40, dtype=np.uint16).reshape(40, 48) * 30)))
    put("rgba.png", "RGBA PNG", image=good.convert("RGBA"))
    exif = Image.Exif()
    exif[0x0112] = 6
    put("rotated.jpg", "EXIF-rotated JPEG (orientation 6)", image=good, fmt="JPEG", exif=exif)
    put("one.png", "1 x 1 pixel", image=_rgb(1, 1, 1))
    put("huge.png", "20000 x 20000 photo", image=Image.new("1", (20_000, 20_000)))
    put("bomb.png", "decompression bomb (100000 x 100000 header)", _bomb())
    put("tiff.tif", "TIFF", image=good, fmt="TIFF")
    put("webp.webp", "WebP", image=good, fmt="WEBP")
    put("gif.gif", "GIF", image=good, fmt="GIF")
    if features.check("avif"):
        put("avif.avif", "AVIF", image=good, fmt="AVIF")
    put("ünïcödé 画像.png", "unicode file name", image=_rgb(48, 40, 2))
    outside = root.parent / "outside.png"
    outside.write_bytes(_bytes(_rgb(48, 40, 3), "PNG"))
    (probe / "link_out.png").symlink_to(outside)
    kinds["link_out.png"] = "symlink out of the tree"
    (probe / "dangling.png").symlink_to(root / "nowhere.png")
    kinds["dangling.png"] = "dangling symlink"
    os.mkfifo(probe / "fifo.png")
    kinds["fifo.png"] = "FIFO named .png"
    (probe / "zero.png").symlink_to("/dev/zero")
    kinds["zero.png"] = "symlink to /dev/zero"
    (probe / "notes.txt").write_text("a caption")
    kinds["notes.txt"] = "a text file beside the images"
    (probe / "._resource.png").write_bytes(b"\0\5\26\7 resource fork")
    kinds["._resource.png"] = "hidden macOS resource fork"
    for i in range(3):
        (root / "real").mkdir(exist_ok=True)
        _rgb(48, 40, 10 + i).save(root / "real" / f"r{i}.png")
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to build and run (default: a temporary folder)")
    parser.add_argument("--detector", default="npr.mini")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        root = base / "data"
        kinds = make_inputs(root)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "bench", "run", "--suite", "folder", "--data-root", str(root), "--detectors", args.detector,
               "--out", str(base / "results"), "--workers", "0"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"bench run did not finish in {args.timeout:.0f} s: something hangs")
            return 1
        wall = time.perf_counter() - t0
        run_dir = base / "results" / "folder"
        scores = pd.read_parquet(run_dir / "scores.parquet")
        failures = pd.read_csv(run_dir / "failures.csv", keep_default_na=False)
        print(f"`{' '.join(['bench'] + cmd[3:])}`: exit {proc.returncode} in {wall:.1f} s\n")
        print("| input | outcome |\n|---|---|")
        for name, kind in kinds.items():
            path = str(root / "fake" / "probe" / name)
            if path in set(scores["path"]):
                outcome = "scored"
            else:
                reasons = failures.loc[failures["path"] == path, "reason"]
                outcome = reasons.iloc[0] if len(reasons) else "(not listed)"
            print(f"| {kind} | {outcome.replace('|', '/')} |")
        print(f"\n{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
