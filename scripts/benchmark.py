#!/usr/bin/env python
"""Per-rule wall times of the last Snakemake run, from its benchmark files.

    python scripts/benchmark.py [--benchmarks DIR] [--run "snakemake --cores 2 ..."]

With --run, first times the whole command (wall clock), then prints the table. The numbers are
measurements of one run on this machine; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def collect(root: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        rule = tsv.relative_to(root).parts[0].removesuffix(".tsv")
        df = pd.read_csv(tsv, sep="\t")
        rows.append(
            {
                "rule": rule,
                "job": str(tsv.relative_to(root)),
                "s": float(df["s"].iloc[-1]),
                "cpu_s": float(df["cpu_time"].iloc[-1]) if "cpu_time" in df else float("nan"),
                "max_rss_mb": float(df["max_rss"].iloc[-1]) if "max_rss" in df else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default="benchmarks", type=Path)
    ap.add_argument("--run", help="command to time first (e.g. 'snakemake --cores 2 --forceall')")
    ap.add_argument("--by-scheme", action="store_true", help="also per scheme for evaluate and quantize jobs")
    args = ap.parse_args()
    if args.run:
        t0 = time.time()
        proc = subprocess.run(shlex.split(args.run))
        print(f"wall clock of `{args.run}`: {time.time() - t0:.1f} s (exit {proc.returncode})")
        if proc.returncode:
            return proc.returncode
    df = collect(args.benchmarks)
    if df.empty:
        print(f"no benchmark files under {args.benchmarks}", file=sys.stderr)
        return 1
    table = df.groupby("rule").agg(
        jobs=("s", "size"),
        total_s=("s", "sum"),
        median_s=("s", "median"),
        max_s=("s", "max"),
        cpu_total_s=("cpu_s", "sum"),
        cpu_median_s=("cpu_s", "median"),
        max_rss_mb=("max_rss_mb", "max"),
    )
    table = table.sort_values("total_s", ascending=False)
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    total = df.s.sum()
    print(
        f"\nsum of job wall times: {total:.1f} s over {len(df)} jobs "
        f"(median job {statistics.median(df.s):.1f} s); with 2 cores the DAG's wall clock is lower"
    )
    print(
        f"sum of job CPU times: {df.cpu_s.sum():.1f} s (less sensitive than wall time to other load "
        f"on the machine; with 2 cores and 1 thread per job, about half of it is the wall clock)"
    )
    if args.by_scheme:
        sub = df[df.rule.isin(["evaluate", "quantize"])].copy()
        sub["scheme"] = [Path(j).stem for j in sub.job]
        per = sub.groupby(["rule", "scheme"]).agg(
            jobs=("s", "size"), median_s=("s", "median"), cpu_median_s=("cpu_s", "median")
        )
        print("\nper scheme (evaluate and quantize jobs):")
        print(per.to_string(float_format=lambda v: f"{v:.1f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
