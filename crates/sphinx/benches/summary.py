#!/usr/bin/env python3
"""Prints the Umbra vs sphinx-packet table for BENCHMARKS.md from the last criterion run.

Run `cargo bench -p umbra-sphinx --bench sphinx` first. Each row compares the two libraries
measured in the same run; "speed-up" is sphinx-packet's mean time over Umbra's.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3] / "target" / "criterion"
GROUPS = [
    "forward hop",
    "final hop",
    "build 3-hop regular packet",
    "make 3-hop SURB",
    "use SURB (wrap a regular reply)",
    "open SURB reply",
]


def mean_us(group, function):
    path = ROOT / group / function / "new" / "estimates.json"
    estimate = json.loads(path.read_text())["mean"]
    return (
        estimate["point_estimate"] / 1000,
        estimate["confidence_interval"]["lower_bound"] / 1000,
        estimate["confidence_interval"]["upper_bound"] / 1000,
    )


def main():
    print("| operation | Umbra | sphinx-packet 0.8.0 | speed-up |")
    print("|---|---:|---:|---:|")
    for group in GROUPS:
        try:
            ours = mean_us(group, "umbra")
            theirs = mean_us(group, "sphinx-packet 0.8.0")
        except FileNotFoundError:
            print(f"no results for {group!r}; run the benchmark first", file=sys.stderr)
            return 1
        print(
            f"| {group} | {ours[0]:.1f} µs ({1e3 / ours[0]:.1f} k/s) "
            f"| {theirs[0]:.1f} µs ({1e3 / theirs[0]:.1f} k/s) "
            f"| **{theirs[0] / ours[0]:.2f}×** |"
        )
    batch = mean_us("forward hop", "umbra, batches of 32")
    theirs = mean_us("forward hop", "sphinx-packet 0.8.0")[0]
    per_packet = batch[0] / 32
    print(
        f"| forward hop, batches of 32 | {per_packet:.1f} µs ({1e3 / per_packet:.1f} k/s) "
        f"| {theirs:.1f} µs ({1e3 / theirs:.1f} k/s) | **{theirs / per_packet:.2f}×** |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
