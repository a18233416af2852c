"""Every case of the bad-input corpus (tests/pipelines/bad_inputs.py, tests/data/bad/) through the CLI in a
subprocess: a non-zero exit with ONE stderr line naming the file or field (or the chips recorded in the
rejects table with the reason), never a traceback, a hang or advice that sends the user the wrong way,
and an output folder left as it was."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
import yaml

from tests.conftest import ROOT
from tests.pipelines.bad_inputs import CASES, Case

# the cases that run a whole build (a Dask LocalCluster, 10 s and more each); the others stop before it
SLOW = {
    "scene_truncated",
    "scene_all_nodata",
    "scene_nan",
    "scene_polar",
    "scene_antimeridian",
    "aef_corrupt_tile",
    "disk_full",
}


def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under the folder (what 'not corrupted' compares)."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _region_file(tmp: Path, case: Case) -> Path:
    if isinstance(case.region, Path):
        return case.region
    path = tmp / "region.yaml"
    path.write_bytes(case.region if isinstance(case.region, bytes) else yaml.safe_dump(case.region).encode())
    return path


def _run(tmp: Path, case: Case) -> subprocess.CompletedProcess[str]:
    region = _region_file(tmp, case)
    cmd = [sys.executable, "-m", "pipelines", case.command, str(region), *case.args]
    if case.command == "build":
        cmd.append("--no-progress")

    def limits() -> None:
        if case.fsize_limit is not None:  # the disk fills up: writes past the limit fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize_limit, case.fsize_limit))

    env = {**os.environ, "TRIPLET_BUILDER_CACHE": str(tmp / "cache")}
    if case.closed_stdout:  # a pipe whose reader has gone: every write to stdout fails with EPIPE
        r, w = os.pipe()
        os.close(r)
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, stdout=w, stderr=subprocess.PIPE, text=True, timeout=240, env=env
            )
        finally:
            os.close(w)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr)
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env, preexec_fn=limits
    )


def _params() -> list[object]:
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [], id=n) for n in CASES]


def test_the_corpus_holds_forty_cases_and_the_readme_lists_each() -> None:
    readme = (ROOT / "tests" / "data" / "bad" / "README.md").read_text()
    assert len(CASES) >= 40
    missing = [n for n in CASES if f"`{n}`" not in readme]
    assert not missing, f"tests/data/bad/README.md does not list {missing}"
    size = sum(p.stat().st_size for p in (ROOT / "tests" / "data" / "bad").iterdir())
    assert size < 2 * 2**20


@pytest.mark.parametrize("name", _params())
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES[name](tmp_path)
    if case.root_skips and os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop root")
    out = tmp_path / "out"
    if case.command == "validate" and not out.exists():  # an existing folder must come through intact
        out.mkdir()
        (out / "keep.txt").write_text("a file of the user's")
    before = _tree(out)
    r = _run(tmp_path, case)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr, r.stderr
    for advice in case.forbid:
        assert advice not in r.stderr, f"misleading advice {advice!r} in: {r.stderr}"
    if case.command == "validate":
        assert _tree(out) == before, "validate changed the output folder"
    if case.expect == "ok":
        assert r.returncode in ((0, 141) if case.closed_stdout else (0,)), r.stderr
        assert not [line for line in err.splitlines() if line.startswith("error:")], err
        return
    if case.expect == "reject":
        manifest = json.loads((out / "manifest.json").read_text())
        by_reason = manifest["counts"]["rejected_by_reason"]
        assert by_reason.get(case.reason, 0) > 0, by_reason
        rejects = pq.read_table(out / "rejects", columns=["reason"]).column("reason").to_pylist()
        assert case.reason in rejects
        assert manifest["counts"]["chips_kept"] == 0
        assert r.returncode != 0
        assert len(err.splitlines()) == 1 and err.startswith("error:"), err
        return
    assert r.returncode != 0, r.stdout
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert case.needle.lower() in lines[0].lower(), lines[0]
    if out.is_dir() and "keep.txt" in before:
        assert (out / "keep.txt").read_text() == "a file of the user's"


def test_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    r = _run(tmp_path, CASES["broken_pipe"](tmp_path))
    assert r.returncode == 141 and r.stderr == "", r.stderr


def test_footprint_across_the_antimeridian_is_split_and_refused_by_name() -> None:
    """A chip of a UTM 60N scene crossing 180 degrees: its outline is a MultiPolygon split at 180 with an
    RFC 7946 bbox (west > east, both in [-180, 180]), never a polygon spanning the globe; the stage
    rejects the chip as `antimeridian` (the shards declare Polygon footprints only)."""
    from datetime import datetime, timezone

    from triplet_builder.footprint import lonlat_bbox, lonlat_polygon
    from triplet_builder.geo import scene_geo
    from triplet_builder.record import Backscatter, BandRef, ChipRecord, GeorefKind, Scale, SceneRef, Window
    from triplet_builder.stages.georef import Georeference

    scene = SceneRef(
        scene_id="am",
        bands=(BandRef("virtual", 1, "VV"),),
        acquired=datetime(2017, 6, 1, tzinfo=timezone.utc),
        acquired_source="sidecar",
        sensor="Sentinel-1A",
        mode="IW",
        orbit_direction=None,
        scale=Scale.DB,
        scale_source="declared",
        backscatter=Backscatter.UNKNOWN,
        georef=GeorefKind.AFFINE,
        crs="EPSG:32660",
        width=200,
        height=200,
        pixel_size_m=100.0,
        nodata=None,
        product="GRD",
        transform=(100.0, 0.0, 820000.0, 0.0, -100.0, 1120000.0),
    )
    window = Window(0, 0, 200, 200, 64, 64)
    lon, lat = scene_geo(scene).window_outline(window, 8)
    geom = lonlat_polygon(lon, lat)
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert np.isclose(geom.area, 20_000.0**2 / (111_000.0**2), rtol=0.1)  # ~0.032 deg2, not the globe
    west, _, east, _ = lonlat_bbox(geom)
    assert west > east and 179.0 < west < 180.0 and -180.0 < east < -179.0
    out = Georeference(block_km=5.0).process(ChipRecord(chip_id="x", scene=scene, window=window))
    assert out.reject_reason == "antimeridian", out.reject_detail
    # a chip that does not cross keeps its plain Polygon (the same vertices as before the split logic)
    lon2, lat2 = np.array([4.0, 5.0, 5.0, 4.0, 4.0]), np.array([43.0, 43.0, 44.0, 44.0, 43.0])
    assert lonlat_polygon(lon2, lat2).equals_exact(shapely.Polygon(np.column_stack([lon2, lat2])), 0)


def test_region_bbox_across_the_antimeridian_is_two_boxes() -> None:
    from triplet_builder.area import area_polygon
    from triplet_builder.config import AreaConfig

    geom = area_polygon(AreaConfig(bbox=(170.0, -20.0, -170.0, -10.0)))
    assert geom.geom_type == "MultiPolygon" and np.isclose(geom.area, 20.0 * 10.0)
    assert geom.contains(shapely.Point(179.9, -15.0)) and geom.contains(shapely.Point(-179.9, -15.0))
    assert not geom.contains(shapely.Point(0.0, -15.0))
