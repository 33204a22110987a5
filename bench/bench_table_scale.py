"""Time and peak memory of the LVD table steps at scale: the out-of-core engine beside the pandas path.

    .venv/bin/python bench/bench_table_scale.py --rows 1000000 10000000 50000000 [--pandas-max-rows 10000000]

For each size it writes a synthetic LVD as Parquet parts of 1M rows (the distributions of
`synthetic_lvd_table`, drawn by DuckDB for one 1M-row block; larger tables repeat the block's scores under
fresh clip ids, which keeps generating 50M rows to minutes) and runs, in one process per path, each step with
its own peak RSS (sampled every 20 ms):

- `scan`: a bare DuckDB scan of the columns the steps read (the floor any engine pays);
- `filter`, `funnel`, `subset`, `validate`, `publish`: the out-of-core steps of `svd data filter/subset`
  (svd_core.curation.table_steps, the aggregate GX gate, streamed hashing and upload);
- `pandas:*`: today's in-memory path (pd.read_parquet, filters.apply_filters, funnel.compute_funnel,
  subsets.random_subset, GX over the frame, publish_dataset(frame)) in one process; its RSS column is the
  peak so far, since the table stays loaded. Skipped above `--pandas-max-rows`.

Prints one table per size: step, seconds, peak RSS (MiB). The target: every engine step of a 50M-row LVD
within 2 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ENGINE_STEPS = ("scan", "filter", "funnel", "subset", "validate", "publish")
BLOCK_ROWS = 1_000_000
SCAN_COLUMNS = (
    "clip_id",
    "duration_s",
    "flow_score",
    "text_area_ratio",
    "aesthetic_score",
    "clip_score",
    "caption",
)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate(rows: int, folder: Path) -> None:
    """A synthetic LVD of `rows` rows as Parquet parts + manifest (DuckDB SQL, bounded memory)."""
    import duckdb

    from svd_core.curation.table import Part, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    con.execute("SET threads = 2")
    con.execute("SELECT setseed(0.42)").fetchall()
    parts = []
    words = "['a','person','dog','city','street','car','ocean','forest','drone','sunset','walking']"
    motions = "['static','horizontal','vertical','zoom_in','zoom_out','complex']"
    lo, hi = 0, min(rows, BLOCK_ROWS)
    query = f"""
        WITH base AS (
          SELECT i, md5('clip-' || i) AS clip_id, md5('video-' || (i // 4)) AS video_id,
                 exp(ln(10.0) + 0.5 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS d,
                 random() * 300 AS start_s, list_element([24.0, 25.0, 30.0]::DOUBLE[], 1 + (random() * 3)::INT % 3) AS fps
          FROM range({lo}, {hi}) t(i))
        SELECT clip_id, video_id, 'file:///data/raw/' || video_id[1:12] || '.mp4' AS source_uri,
               'file:///data/lvd/shard-' || lpad((i // 1000)::VARCHAR, 6, '0') || '.tar#' || clip_id || '.mp4' AS clip_uri,
               start_s, start_s + least(greatest(d, 0.5), 120.0) AS end_s, fps,
               greatest(1, round(least(greatest(d, 0.5), 120.0) * fps))::BIGINT AS num_frames,
               1024::BIGINT AS width, 576::BIGINT AS height, least(greatest(d, 0.5), 120.0) AS duration_s,
               1.5 * (-ln(1 - random()) - ln(1 - random())) AS flow_score,
               CASE WHEN random() < 0.5 THEN 0.0 ELSE least(1.0, -ln(1 - random()) * 0.09) END AS text_area_ratio,
               least(10.0, greatest(0.0, 5.0 + 0.8 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))) AS aesthetic_score,
               least(1.0, greatest(-1.0, 0.28 + 0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))) AS clip_score,
               list_element({words}, 1 + (random() * 11)::INT % 11) || ' ' || list_element({words}, 1 + (random() * 11)::INT % 11)
                 || ' ' || list_element({words}, 1 + (random() * 11)::INT % 11) AS caption,
               'image+video+llm' AS caption_source, list_element({motions}, 1 + (random() * 6)::INT % 6) AS camera_motion,
               0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS cam_tx,
               0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS cam_ty,
               0.02 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS cam_zoom,
               '{{"synthetic": "bench"}}' AS scorer_versions
        FROM base"""
    block = folder / "_block.parquet"
    con.execute(f"COPY ({query}) TO '{block}' (FORMAT parquet, COMPRESSION snappy)").fetchall()
    # Larger tables repeat the block's scores with fresh clip ids (cheap: no hashing or sampling per row).
    for k, start in enumerate(range(0, rows, BLOCK_ROWS)):
        n = min(BLOCK_ROWS, rows - start)
        name = f"part-{k:05d}.parquet"
        copy = f"SELECT clip_id || '-{k:05d}' AS clip_id, * EXCLUDE (clip_id) FROM read_parquet('{block}') LIMIT {n}"
        con.execute(f"COPY ({copy}) TO '{folder / name}' (FORMAT parquet, COMPRESSION snappy)").fetchall()
        parts.append(Part(name, n))
    block.unlink()
    con.close()
    write_manifest(str(folder), parts)


class RssSampler:
    """Peak RSS of this process while a block runs (sampled every 20 ms by psutil; ru_maxrss only grows)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def run_engine_all(table: str, work: Path) -> list[dict[str, Any]]:
    """Every engine step in one process (imports paid once), each with its own sampled peak RSS."""
    out = []
    for step in ENGINE_STEPS:
        with RssSampler() as rss:
            res = run_engine_step(step, table, work)
        out.append({**res, "step": step, "peak_mib": rss.peak / 2**20})
    return out


def run_engine_step(step: str, table: str, work: Path) -> dict[str, Any]:
    """One out-of-core step in this process; returns its seconds and peak RSS."""
    from flows.integrations.validation import validate_dataset
    from svd_core.curation import table_steps
    from svd_core.curation.config import FilterConfig, SubsetConfig, ValidationConfig
    from svd_core.curation.publish import publish_dataset
    from svd_core.curation.table import table_session

    started = time.perf_counter()
    info: dict[str, Any] = {}
    cfg = FilterConfig()
    if step == "validate":
        report = validate_dataset(
            str(work / "lvd_f.parquet"), None, ValidationConfig(), work / "docs", "lvd_f"
        )
        info["success"] = report.success
    elif step == "publish":
        published = publish_dataset(str(work / "curated"), "lvd_f", work / "lvd_f.parquet")
        info["rows"] = published.rows
    else:
        with table_session() as session:
            view = session.open(table)
            if step == "scan":
                cols = ", ".join(
                    f"count({c})" if c in ("clip_id", "caption") else f"avg({c})" for c in SCAN_COLUMNS
                )
                info["row"] = [float(v) for v in session.row(f"SELECT {cols} FROM {view.ident}")][:2]
            elif step == "filter":
                result = table_steps.apply_filters(session, view, cfg)
                table_steps.write_kept(session, result, work / "lvd_f.parquet.tmp")
                (work / "lvd_f.parquet.tmp").rename(work / "lvd_f.parquet")
                info["kept"] = result.kept_rows
            elif step == "funnel":
                result = table_steps.apply_filters(session, view, cfg)
                funnel = table_steps.compute_funnel(session, result, cfg)
                info["kept_fraction"] = round(funnel.metrics["kept_fraction"], 4)
            elif step == "subset":
                info["rows"] = table_steps.write_subset(
                    session, view, SubsetConfig(), work / "lvd_10m.parquet"
                )
    return {"seconds": time.perf_counter() - started, "peak_mib": _peak_mib(), **info}


def run_pandas(table: str, work: Path) -> list[tuple[str, float, float]]:
    """Today's in-memory path, step by step in this process (peak RSS so far after each step)."""
    import pandas as pd

    from flows.integrations.validation import validate_dataset
    from svd_core.curation.config import FilterConfig, SubsetConfig, ValidationConfig
    from svd_core.curation.filters import apply_filters
    from svd_core.curation.funnel import compute_funnel
    from svd_core.curation.publish import publish_dataset
    from svd_core.curation.subsets import random_subset

    out = []

    def timed(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        value = fn()
        out.append((f"pandas:{name}", time.perf_counter() - t0, _peak_mib()))
        return value

    frame = timed("read", lambda: pd.read_parquet(table))
    result = timed("filter", lambda: apply_filters(frame, FilterConfig()))
    timed("funnel", lambda: compute_funnel(frame, result, FilterConfig()))
    timed("subset", lambda: random_subset(frame, SubsetConfig()))
    timed(
        "validate", lambda: validate_dataset(result.kept, None, ValidationConfig(), work / "pdocs", "lvd_f")
    )
    timed("publish", lambda: publish_dataset(str(work / "pcurated"), "lvd_f", result.kept))
    return out


def _child(args: list[str], timeout: float) -> Any:
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(rows: int, root: Path, pandas_max_rows: int, timeout: float) -> None:
    table = root / f"lvd-{rows}"
    t0 = time.perf_counter()
    generate(rows, table)
    print(
        f"\n## {rows:,} rows (generated in {time.perf_counter() - t0:.0f} s, "
        f"{sum(p.stat().st_size for p in table.iterdir()) / 2**30:.2f} GiB of Parquet)",
        flush=True,
    )
    print(f"{'step':<18}{'seconds':>10}{'peak RSS MiB':>14}  notes", flush=True)
    work = root / f"work-{rows}"
    work.mkdir()
    try:
        results = _child(["--engine", "--table", str(table), "--work", str(work)], timeout)
    except subprocess.TimeoutExpired:
        results = {"error": f"timeout after {timeout:.0f} s"}
    if isinstance(results, dict):
        print(f"{'engine:*':<18}{'-':>10}{'-':>14}  {results['error']}", flush=True)
        results = []
    for res in results:
        notes = {k: v for k, v in res.items() if k not in ("seconds", "peak_mib", "step")}
        print(f"{res['step']:<18}{res['seconds']:>10.1f}{res['peak_mib']:>14.0f}  {notes or ''}", flush=True)
    if rows > pandas_max_rows:
        print(
            f"{'pandas:*':<18}{'-':>10}{'-':>14}  skipped (> --pandas-max-rows {pandas_max_rows:,})",
            flush=True,
        )
    else:
        try:
            res = _child(["--pandas", "--table", str(table), "--work", str(work)], timeout)
        except subprocess.TimeoutExpired:
            res = {"error": f"timeout after {timeout:.0f} s"}
        if isinstance(res, dict):
            print(f"{'pandas:*':<18}{'-':>10}{'-':>14}  {res['error']}", flush=True)
        else:
            for name, seconds, peak in res:
                print(f"{name:<18}{seconds:>10.1f}{peak:>14.0f}", flush=True)
    shutil.rmtree(table)
    shutil.rmtree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--pandas-max-rows", type=int, default=10_000_000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="Seconds per step process.")
    parser.add_argument("--workdir", default=None, help="Folder for the generated tables (default: tmp).")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--pandas", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(run_engine_step(args.step, args.table, Path(args.work))))
        return
    if args.pandas:
        print(json.dumps(run_pandas(args.table, Path(args.work))))
        return
    if args.engine:
        print(json.dumps(run_engine_all(args.table, Path(args.work))))
        return
    with tempfile.TemporaryDirectory(prefix="svd-bench-table-", dir=args.workdir) as tmp:
        for rows in args.rows:
            bench(rows, Path(tmp), args.pandas_max_rows, args.timeout)


if __name__ == "__main__":
    main()
