#!/usr/bin/env python3
"""The roofline of one engine run, from `kestrel perf --profile-csv` output.

For every step: FLOPs and bytes moved (from the CSV), its arithmetic intensity (FLOP per byte), and
the time the roofline allows, max(FLOPs / peak FLOP/s, bytes / peak bandwidth); a step is
memory-bound when its intensity is below the ridge point (peak FLOP/s / bandwidth). Prints two
Markdown tables: per operator class, and the slowest steps.

  scripts/roofline.py layers.csv [--batch 32] [--tflops 800] [--tbps 3.0] [--top 15]

Defaults are the H100 ceilings measured in docs/PERFORMANCE.md: ~800 TFLOP/s FP16 dense, ~3 TB/s.
"""
import argparse
import csv
import sys
from collections import OrderedDict


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("--batch", type=int, default=None, help="batch size to show (default: largest)")
    p.add_argument("--tflops", type=float, default=800.0, help="compute roof, TFLOP/s")
    p.add_argument("--tbps", type=float, default=3.0, help="memory roof, TB/s")
    p.add_argument("--top", type=int, default=15, help="slowest steps listed")
    a = p.parse_args()

    with open(a.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{a.csv}: no rows")
    batches = sorted({int(r["batch"]) for r in rows})
    batch = a.batch if a.batch is not None else batches[-1]
    rows = [r for r in rows if int(r["batch"]) == batch]
    if not rows:
        sys.exit(f"{a.csv}: no rows for batch {batch} (have {batches})")

    peak_flops = a.tflops * 1e12
    peak_bytes = a.tbps * 1e12
    ridge = peak_flops / peak_bytes

    def roof_ms(flops, nbytes):
        return max(flops / peak_flops, nbytes / peak_bytes) * 1e3

    total_ms = sum(float(r["ms"]) for r in rows)
    total_flops = sum(int(r["flops"]) for r in rows)
    total_roof = sum(roof_ms(int(r["flops"]), int(r["bytes"])) for r in rows)
    print(f"batch {batch}: {len(rows)} steps, {total_ms:.3f} ms measured step by step, "
          f"{total_flops / total_ms / 1e9:.1f} TFLOP/s; the roofline allows {total_roof:.3f} ms "
          f"({total_roof / total_ms:.0%} of the measured time). Ridge point {ridge:.0f} FLOP/B "
          f"({a.tflops:g} TFLOP/s, {a.tbps:g} TB/s).\n")

    classes = OrderedDict()
    for r in sorted(rows, key=lambda r: -float(r["ms"])):
        c = classes.setdefault(r["op"], {"n": 0, "ms": 0.0, "flops": 0, "bytes": 0, "roof": 0.0})
        c["n"] += 1
        c["ms"] += float(r["ms"])
        c["flops"] += int(r["flops"])
        c["bytes"] += int(r["bytes"])
        c["roof"] += roof_ms(int(r["flops"]), int(r["bytes"]))
    print("| operator | steps | ms | share | FLOP/B | bound | TFLOP/s | GB/s | roofline ms | "
          "of roof |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for op, c in classes.items():
        intensity = c["flops"] / c["bytes"] if c["bytes"] else float("inf")
        bound = "compute" if intensity >= ridge else "memory"
        print(f"| {op} | {c['n']} | {c['ms']:.3f} | {c['ms'] / total_ms:.1%} | {intensity:.0f} | "
              f"{bound} | {c['flops'] / c['ms'] / 1e9:.1f} | {c['bytes'] / c['ms'] / 1e6:.0f} | "
              f"{c['roof']:.3f} | {c['roof'] / c['ms']:.0%} |")

    print(f"\nSlowest {a.top} steps:\n")
    print("| step | op | output | ms | FLOP/B | bound | TFLOP/s | GB/s | of roof |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -float(r["ms"]))[: a.top]:
        ms, flops, nbytes = float(r["ms"]), int(r["flops"]), int(r["bytes"])
        intensity = flops / nbytes if nbytes else float("inf")
        bound = "compute" if intensity >= ridge else "memory"
        print(f"| {r['node']} | {r['op']} | {r['output']} | {ms:.3f} | {intensity:.0f} | {bound} | "
              f"{flops / ms / 1e9:.1f} | {nbytes / ms / 1e6:.0f} | "
              f"{roof_ms(flops, nbytes) / ms:.0%} |")


if __name__ == "__main__":
    main()
