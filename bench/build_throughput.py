"""Benchmark: chips per second of the whole build against a floor measured in the same run, and peak
memory for 1 and for N scenes of a large generated scene.

The floor does only what any build must: read the same windows with rasterio, encode the same PNGs and
write the same bytes to Parquet. The ratio build / floor says what the pipeline's own work costs (facts,
text, embeddings, checks, Dask); the per-stage seconds from the manifest say where it goes.

    python -m bench.build_throughput                  # demo + a 10,000 x 10,000 px scene, 1 and 4 scenes
    python -m bench.build_throughput --size 4000      # quicker
    python -m bench.build_throughput --fact-stages    # also the land_cover and osm stages (local sources)

The large scene is built `--repeats` times (default 3) with 1 worker, its floor measured right after, and
with 2 workers: same-run ratios, medians reported (the machine is shared). The N-scene build runs with 1
and with 2 workers too (`--workers 1`, the default): the scaling of a build with N times the tasks. Results are printed and written
to bench/out/results.json (with the machine, its CPU count and the load average of each repeat).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import yaml
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window as RioWindow

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"


def floor_seconds(manifest: dict[str, Any], region: dict[str, Any]) -> tuple[float, int]:
    """Read the kept chips' windows, encode their PNGs, write those bytes to Parquet: nothing else."""
    from schemas.codec import Stretch, encode_chip, to_db
    from triplet_builder.record import Scale

    out = Path(region["output"]["dir"])
    t = pq.read_table(out / "data", columns=["source_uris", "window", "width", "height", "polarisations"])
    rows = t.to_pylist()
    stretch = Stretch(**region["output"].get("stretch", {}))
    scale = {s["scene_id"]: s["scale"] for s in manifest["scenes"]}
    scale_of_uri = {u: scale[s["scene_id"]] for s in manifest["scenes"] for u in s["uris"]}
    # rows name local scenes by file name (triplet_builder/portable.py): find them by the region's globs
    local = {Path(f).name: f for pat in region["scenes"]["paths"] for f in glob.glob(pat)}
    t0 = time.perf_counter()
    handles: dict[str, Any] = {}
    images = []
    for r in rows:
        uri = r["source_uris"][0]
        ds = handles.get(uri) or handles.setdefault(uri, rasterio.open(local.get(uri, uri)))
        w = r["window"]
        arr = ds.read(
            1,
            window=RioWindow(w["col_off"], w["row_off"], w["width"], w["height"]),
            out_shape=(r["height"], r["width"]),
            resampling=Resampling.average,
            masked=True,
        )
        db, valid = to_db(
            np.ma.filled(arr.astype(np.float32), np.nan)[None], Scale(scale_of_uri[uri]), ds.nodata
        )
        enc = encode_chip(db, valid, tuple(r["polarisations"]), stretch)
        images.append({"bytes": enc[0], "path": "x.png"})
    table = pa.table({"image": images})
    pq.write_table(table, OUT / "floor.parquet", compression="zstd", row_group_size=256)
    for ds in handles.values():
        ds.close()
    return time.perf_counter() - t0, len(rows)


def aef_floor_seconds(region: dict[str, Any]) -> float:
    """The AlphaEarth part of a triplet build's I/O floor: every COG block under the kept chips' anchors
    read (all 64 bands decompressed) exactly once, in one provider call, nothing else."""
    from triplet_builder.embeddings.cog import CogEmbeddingProvider

    out = Path(region["output"]["dir"])
    t = pq.read_table(out / "data", columns=["aef_lonlat", "aef_year"])
    lonlat = np.asarray([p for row in t["aef_lonlat"].to_pylist() for p in row], dtype=np.float64)
    year = int(t["aef_year"][0].as_py())
    emb = region["embeddings"]
    provider = CogEmbeddingProvider(emb["root"], synthetic=emb.get("synthetic", False), cache_bytes=0)
    provider.sample(lonlat[:1, 0], lonlat[:1, 1], year)  # the index and the file header: not block reads
    t0 = time.perf_counter()
    provider.sample(lonlat[:, 0], lonlat[:, 1], year)
    elapsed = time.perf_counter() - t0
    provider.close()
    return elapsed


def run_build(
    region_path: Path,
    workers: int,
    code: Path = ROOT,
    *,
    allow_empty: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], float, int]:
    """The whole build through the CLI of the checkout `code` (default: this one), with `env` added to
    this environment; returns (manifest, wall seconds, peak RSS in MB of any process)."""
    # a wrapper process per build, so RUSAGE_CHILDREN covers this build's process tree only
    wrapper = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)"
    )
    cmd = [
        sys.executable,
        "-m",
        "pipelines",
        "build",
        str(region_path),
        "--no-progress",
        "--overwrite",
        "--workers",
        str(workers),
    ]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd],
        cwd=code,
        capture_output=True,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    wall = time.perf_counter() - t0
    region = yaml.safe_load(region_path.read_text())
    manifest_path = Path(region["output"]["dir"]) / "manifest.json"
    empty = allow_empty and manifest_path.exists() and "no chip was kept" in r.stdout + r.stderr
    if r.returncode != 0 and not empty:
        lines = r.stderr.strip().splitlines()[:-1]  # the last line is the wrapper's peak RSS
        raise SystemExit(f"build failed: {lines[-1] if lines else r.returncode}")
    peak = int(r.stderr.strip().splitlines()[-1])
    region = yaml.safe_load(region_path.read_text())
    manifest = json.loads((Path(region["output"]["dir"]) / "manifest.json").read_text())
    return manifest, wall, peak // 1024


def scene_profile(size: int, **extra: Any) -> dict[str, Any]:
    """The GeoTIFF profile of the benchmarks' generated scenes: size x size float32 dB at 10 m in
    EPSG:32631 (Rhone delta), tiled 512 px and deflate-compressed like a COG."""
    return {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": size,
        "height": size,
        "crs": "EPSG:32631",
        "transform": from_origin(640000, 4815000, 10, 10),
        "nodata": np.nan,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        **extra,
    }


def make_large_scene(path: Path, size: int, seed: int) -> None:
    """A size x size px float32 dB scene (10 m, EPSG:32631, Rhone delta), speckled land with a dark
    channel and bright point targets; written block by block, tiled and compressed like a COG."""
    rng = np.random.default_rng(seed)
    profile = scene_profile(size, predictor=3)
    with rasterio.open(path, "w", **profile) as ds:
        ds.update_tags(ACQUISITION_START_TIME=f"2017-0{1 + seed % 9}-15T05:43:59Z")
        ds.set_band_description(1, "VV")
        for row in range(0, size, 512):
            h = min(512, size - row)
            base = np.full((h, size), -9.0, np.float32)
            cols = np.arange(size)
            channel = (
                np.abs(cols - size * (0.3 + 0.1 * np.sin((row + np.arange(h))[:, None] / 900))) < size * 0.05
            )
            base = np.where(channel, -22.0, base)
            lin = 10 ** (base / 10) * rng.exponential(1.0, (h, size)).astype(np.float32)
            pts = rng.random((h, size)) < 2e-5
            lin[pts] = 300.0
            ds.write(10 * np.log10(lin).astype(np.float32), 1, window=RioWindow(0, row, size, h))


def generated_inputs(size: int, n: int, out: Path = OUT) -> tuple[list[Path], Path]:
    """`n` generated `size` px scenes (other dates of one place) and the synthetic AlphaEarth tile under
    them, made once and kept in `out` (bench/out; the tile takes minutes to write)."""
    scenes_dir = out / "scenes"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(n):
        p = scenes_dir / f"large_{size}_{i}.tif"
        if not p.exists():
            make_large_scene(p, size, seed=i)
        scenes.append(p)
    aef = out / f"aef_{size}"
    if not (aef / "aef_index.parquet").exists():
        shutil.rmtree(aef, ignore_errors=True)
        from triplet_builder.embeddings.synthetic import main as synth

        synth(["--out", str(aef), "--scenes", str(scenes[0]), "--years", "2017", "--seed", "0"])
    return scenes, aef


def bench_region(
    name: str, scenes: list[Path], aef_root: Path, size: int, stages: list[dict[str, Any]] | None = None
) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw.update(name=name, years=[2017], workers=2)
    raw["area"] = {"bbox": [4.0, 43.0, 5.5, 44.0]}
    raw["scenes"] = {
        "type": "local",
        "paths": [str(p) for p in scenes],
        "scale": "db",
        "backscatter": "sigma0",
    }
    raw["embeddings"] = {"type": "cog", "root": str(aef_root), "synthetic": True, "grid": 16}
    raw["chip"] = {"size": size, "stride": size, "pixel_size_m": 10}
    raw["output"] = {"dir": str(OUT / name)}
    # blocks of 10 km: with the demo's 2.5 km blocks most 2.56 km chips straddle two splits and 80 % of
    # the windows end as split_guard rejects (the build warns so), which is not a build worth timing
    raw["split"] = {**raw.get("split", {}), "block_km": 10.0}
    # tasks of 64 windows: a 10,000 px scene lays 525 windows in the bbox, one 512-window task and a
    # 13-window one at the default, which no second worker can share
    raw["chips_per_task"] = 64
    raw["stages"] = stages or []  # not the demo's own (land_cover / osm without data)
    OUT.mkdir(parents=True, exist_ok=True)  # a fresh clone has no bench/out yet
    p = OUT / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def report(label: str, manifest: dict[str, Any], wall: float, floor_s: float, n: int) -> dict[str, Any]:
    task_s = sum(st["seconds"] for st in manifest["stages"].values())
    res = {
        "label": label,
        "windows": manifest["counts"]["windows"],
        "chips_kept": n,
        "build_wall_s": round(wall, 2),
        "build_chips_per_s": round(manifest["counts"]["windows"] / wall, 2),
        "stage_seconds": {k: round(v["seconds"], 2) for k, v in manifest["stages"].items()},
        "stage_sum_s": round(task_s, 2),
        "floor_s": round(floor_s, 2),
        "floor_chips_per_s": round(n / floor_s, 2),
        "ratio_wall_vs_floor": round(wall / floor_s, 2),
        "ratio_stage_time_vs_floor": round(task_s / floor_s, 2),
    }
    print(json.dumps(res, indent=1))
    return res


def machine() -> str:
    """The CPU model and count (what the figures were measured on)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def added_by_stages(region_path: Path, names: list[str], floor_s: float, repeats: int) -> dict[str, Any]:
    """Seconds of the named stages (summed over tasks) in `repeats` 1-worker builds, against a floor
    measured on the same scene without them: what those stages add to the stage time / floor ratio."""
    runs = []
    for _ in range(repeats):
        m, wall, _ = run_build(region_path, 1, allow_empty=True)  # see RESULTS.md: the checker
        secs = {k: round(m["stages"][k]["seconds"], 2) for k in names}
        runs.append(
            {"build_wall_s": round(wall, 2), "stage_seconds": secs, "kept": m["counts"]["chips_kept"]}
        )
    added = statistics.median(sum(r["stage_seconds"].values()) for r in runs)
    out = {
        "repeats": runs,
        "median_seconds": round(added, 2),
        "added_ratio_vs_floor": round(added / floor_s, 3),
    }
    print(json.dumps(out))
    return out


def repeated(
    region_path: Path, repeats: int, *, two_workers: bool = True, before: Path | None = None
) -> dict[str, Any]:
    """`repeats` x (1-worker build, its floor, 2-worker build[, 1-worker build of the checkout `before`]),
    interleaved so that each ratio is taken under the same load; the medians of the same-run ratios."""
    region = yaml.safe_load(region_path.read_text())
    runs = []
    for i in range(repeats):
        load = os.getloadavg()[0]
        m1, wall1, peak1 = run_build(region_path, 1)
        fs, n = floor_seconds(m1, region)
        run = report(f"{region['name']} repeat {i + 1}, 1 worker", m1, wall1, fs, n)
        # the I/O floor of a triplet: the floor plus each AlphaEarth block under the kept anchors, read once
        io_floor = fs + aef_floor_seconds(region)
        run["io_floor_s"] = round(io_floor, 2)
        run["ratio_stage_time_vs_io_floor"] = round(
            sum(st["seconds"] for st in m1["stages"].values()) / io_floor, 2
        )
        run["ratio_wall_vs_io_floor"] = round(wall1 / io_floor, 2)
        run["load_average_1min"] = round(load, 2)
        run["peak_rss_mb"] = peak1
        if two_workers:
            _, wall2, _ = run_build(region_path, 2)
            run["build_wall_2_workers_s"] = round(wall2, 2)
            run["speedup_2_vs_1_workers"] = round(wall1 / wall2, 2)
        if before is not None:
            mb, wallb, _ = run_build(region_path, 1, code=before)
            stage_b = sum(st["seconds"] for st in mb["stages"].values())
            run["before"] = {
                "build_wall_s": round(wallb, 2),
                "ratio_stage_time_vs_io_floor": round(stage_b / io_floor, 2),
                "stage_seconds": {k: round(v["seconds"], 2) for k, v in mb["stages"].items()},
                "ratio_wall_vs_floor": round(wallb / fs, 2),
                "ratio_stage_time_vs_floor": round(stage_b / fs, 2),
            }
        runs.append(run)

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    out: dict[str, Any] = {
        "repeats": runs,
        "median_ratio_stage_time_vs_floor": med("ratio_stage_time_vs_floor"),
        "median_ratio_wall_vs_floor": med("ratio_wall_vs_floor"),
        "median_ratio_stage_time_vs_io_floor": med("ratio_stage_time_vs_io_floor"),
        "median_ratio_wall_vs_io_floor": med("ratio_wall_vs_io_floor"),
        "peak_rss_mb_1_worker": max(r["peak_rss_mb"] for r in runs),
        "median_floor_s": med("floor_s"),
    }
    if two_workers:
        out["median_speedup_2_vs_1_workers"] = med("speedup_2_vs_1_workers")
    if before is not None:
        for k in ("ratio_stage_time_vs_floor", "ratio_wall_vs_floor"):
            out[f"before_median_{k}"] = round(statistics.median(r["before"][k] for r in runs), 2)
    print(json.dumps({k: v for k, v in out.items() if k != "repeats"}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_000, help="large scene size in px (square)")
    ap.add_argument("--chip", type=int, default=256)
    ap.add_argument("--scenes", type=int, default=4, help="scene count of the memory comparison")
    ap.add_argument("--workers", type=int, default=1, help="workers of the demo and the N-scene builds")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the large scene's 1 / 2 worker builds")
    ap.add_argument(
        "--before", type=Path, help="another checkout (e.g. the main branch) also built in each repeat"
    )
    ap.add_argument(
        "--fact-stages", action="store_true", help="also the large scene with the land_cover and osm stages"
    )
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "cpu_count": os.cpu_count(), "workers": args.workers}

    # 1. the demo
    raw = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(ROOT / "data/demo/spatialist/*.tif")]
    raw["embeddings"]["root"] = str(ROOT / "data/demo/aef_synthetic")
    raw["output"]["dir"] = str(OUT / "demo")
    demo_region = OUT / "demo.yaml"
    demo_region.write_text(yaml.safe_dump(raw))
    m, wall, _ = run_build(demo_region, args.workers)
    fs, n = floor_seconds(m, raw)
    results["demo"] = report("demo", m, wall, fs, n)

    # 2. a large generated scene, then N copies of it (other dates) for memory
    scenes, aef = generated_inputs(args.size, args.scenes)
    one = bench_region("large1", scenes[:1], aef, args.chip)
    results["large_1_scene"] = repeated(one, args.repeats, before=args.before)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    peak1 = results["large_1_scene"]["peak_rss_mb_1_worker"]
    if args.fact_stages:
        from bench.fact_stage_sources import fact_stages

        stages = fact_stages(OUT / "fact_sources", scenes[0])
        region = bench_region("large1_fact_stages", scenes[:1], aef, args.chip, stages)
        results["large_1_scene_fact_stages"] = added_by_stages(
            region, ["land_cover", "osm"], results["large_1_scene"]["median_floor_s"], args.repeats
        )
    if args.scenes < 2:
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
        return 0
    many = bench_region(f"large{args.scenes}", scenes, aef, args.chip)
    m4, wall4, peak4 = run_build(many, args.workers)
    results["large_n_scenes"] = {
        "scenes": args.scenes,
        "workers": args.workers,
        "build_wall_s": round(wall4, 2),
        "chips": m4["counts"]["windows"],
        "stage_seconds": round(sum(st["seconds"] for st in m4["stages"].values()), 2),
    }
    if args.workers == 1:
        # the same build on 2 workers: N scenes are N times the tasks of one, so neither the last task's
        # tail nor the cluster's fixed start weighs as it does on one scene's 9 tasks
        _, wall4_2, _ = run_build(many, 2)
        results["large_n_scenes"]["build_wall_2_workers_s"] = round(wall4_2, 2)
        results["large_n_scenes"]["speedup_2_vs_1_workers"] = round(wall4 / wall4_2, 2)
        print(json.dumps(results["large_n_scenes"]))
    results["peak_rss_mb"] = {
        "1_scene": peak1,
        f"{args.scenes}_scenes": peak4,
        "ratio": round(peak4 / max(peak1, 1), 2),
    }
    print(json.dumps(results["peak_rss_mb"]))
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
