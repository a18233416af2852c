"""The bad-input corpus: each case builds its inputs in a temporary folder (binary files generated here,
deterministically; small text files checked in under tests/data/bad/, see its README) and says what the
CLI must do with them. tests/pipelines/test_bad_inputs.py runs every case through `python -m pipelines`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from rasterio.control import GroundControlPoint

from tests.conftest import PORT_TILE, ROOT

BAD = ROOT / "tests" / "data" / "bad"
DEMO = ROOT / "pipelines" / "regions" / "demo.yaml"
AEF = ROOT / "data" / "demo" / "aef_synthetic"
PORT_BBOX = [4.40, 43.30, 4.95, 43.70]
# advice that sends the user the wrong way unless the scene file itself is broken
SCENE_ADVICE = "fetch it again"


@dataclass
class Case:
    """One bad input: the region file (or raw bytes), the command, and what must come of it.

    expect: "error" (non-zero exit, one stderr line containing `needle`), "reject" (the chips end in the
    rejects table with `reason`), "ok" (an edge that is valid: exit 0, no error line)."""

    region: dict[str, Any] | bytes | Path
    expect: str = "error"
    needle: str = ""
    command: str = "validate"
    args: list[str] = field(default_factory=list)
    reason: str | None = None
    forbid: tuple[str, ...] = (SCENE_ADVICE,)
    fsize_limit: int | None = None  # RLIMIT_FSIZE of the build (a full disk)
    closed_stdout: bool = False  # stdout is a pipe nobody reads (`| head -1` after head exited)
    root_skips: bool = False  # permissions mean nothing to root


def base_region(tmp: Path, **changes: Any) -> dict[str, Any]:
    """The demo region on the real port tile alone, one worker, output in tmp/out."""
    raw: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    raw["scenes"]["paths"] = [str(PORT_TILE)]
    raw["embeddings"]["root"] = str(AEF)
    raw["output"]["dir"] = str(tmp / "out")
    raw["workers"] = 1
    raw.update(changes)
    return raw


def _scene(
    tmp: Path,
    name: str,
    data: np.ndarray,
    *,
    crs: str | None,
    transform: Affine | None,
    nodata: float | None = None,
    gcps: list[GroundControlPoint] | None = None,
    cog: bool = False,
) -> Path:
    """A one-band dB GeoTIFF with a sidecar giving its acquisition time (2017) and scale."""
    path = tmp / "scenes" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": str(data.dtype),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
    }
    if transform is not None:
        profile["transform"] = transform
    if crs is not None and gcps is None:
        profile["crs"] = crs
    target = path.with_suffix(".plain.tif") if cog else path
    with rasterio.open(target, "w", **profile) as ds:
        ds.write(data, 1)
        if gcps is not None:
            ds.gcps = (gcps, crs)
    if cog:  # header and tile offsets first, pixels after them: truncation fails MID-read
        rasterio.shutil.copy(target, path, driver="COG", BLOCKSIZE=64, COMPRESS="DEFLATE")
        target.unlink()
    Path(f"{path}.json").write_text(
        json.dumps(
            {"acquired": "2017-06-01T05:43:59Z", "sensor": "Sentinel-1A", "polarisation": "VV", "scale": "db"}
        )
    )
    return path


def _noise(h: int = 256, w: int = 256) -> np.ndarray:
    return np.random.default_rng(7).normal(-12.0, 3.0, (h, w)).astype(np.float32)


PORT_UTM = Affine(20.0, 0.0, 640000.0, 0.0, -20.0, 4815000.0)  # EPSG:32631, over the port tile's area


def _synthetic_region(
    tmp: Path, scene: Path, bbox: list[float] | None = None, **changes: Any
) -> dict[str, Any]:
    raw = base_region(tmp, **changes)
    raw["scenes"]["paths"] = [str(scene)]
    raw["chip"] = {"size": 64}
    if bbox is not None:
        raw["area"] = {"bbox": bbox}
    return raw


# -- the cases ---------------------------------------------------------------------------------------------
def c_python_tag(tmp: Path) -> Case:
    return Case(BAD / "region_python_tag.yaml", needle="yaml tag")


def c_non_utf8(tmp: Path) -> Case:
    text = yaml.safe_dump(base_region(tmp)).encode() + b"description: caf\xe9 \xff\n"
    return Case(text, needle="not utf-8")


def c_unknown_key(tmp: Path) -> Case:
    return Case(base_region(tmp, colour="red"), needle="colour")


def c_wrong_type(tmp: Path) -> Case:
    raw = base_region(tmp)
    raw["chip"]["size"] = "big"
    return Case(raw, needle="chip.size")


def c_not_mapping(tmp: Path) -> Case:
    return Case(b"- just\n- a list\n", needle="mapping")


def c_bad_syntax(tmp: Path) -> Case:
    return Case(b"name: demo\narea: {bbox: [1, 2\n", needle="line")


def c_missing_region(tmp: Path) -> Case:
    return Case(tmp / "nowhere.yaml", needle="not found")


def c_bbox_zero_size(tmp: Path) -> Case:
    return Case(base_region(tmp, area={"bbox": [4.5, 43.4, 4.5, 43.6]}), needle="bbox")


def c_bbox_nan(tmp: Path) -> Case:
    return Case(yaml.safe_dump(base_region(tmp)).replace("- 4.4\n", "- .nan\n", 1).encode(), needle="bbox")


def c_bbox_out_of_range(tmp: Path) -> Case:
    return Case(base_region(tmp, area={"bbox": [4.4, 43.3, 200.0, 43.7]}), needle="bbox")


def c_bbox_south_above_north(tmp: Path) -> Case:
    return Case(base_region(tmp, area={"bbox": [4.4, 43.7, 4.95, 43.3]}), needle="bbox")


def c_bbox_huge(tmp: Path) -> Case:  # the whole Earth is a valid region: the tile inside it is found
    return Case(base_region(tmp, area={"bbox": [-180, -90, 180, 90]}), expect="ok")


def c_bbox_antimeridian_elsewhere(tmp: Path) -> Case:  # west > east: across 180, far from the tile
    return Case(base_region(tmp, area={"bbox": [170.0, -20.0, -170.0, -10.0]}), needle="outside every scene")


def c_area_bowtie(tmp: Path) -> Case:  # a self-intersecting polygon is repaired, not refused
    return Case(base_region(tmp, area={"path": str(BAD / "area_bowtie.geojson")}), expect="ok")


def c_area_points(tmp: Path) -> Case:
    return Case(base_region(tmp, area={"path": str(BAD / "area_points.geojson")}), needle="area.path")


def c_area_garbage(tmp: Path) -> Case:
    return Case(base_region(tmp, area={"path": str(BAD / "area_garbage.geojson")}), needle="area.path")


def c_area_both(tmp: Path) -> Case:
    return Case(
        base_region(tmp, area={"bbox": PORT_BBOX, "path": str(BAD / "area_points.geojson")}), needle="area"
    )


def c_years_before_2017(tmp: Path) -> Case:
    return Case(base_region(tmp, years=[2015]), needle="2017")


def c_years_without_embeddings(tmp: Path) -> Case:
    return Case(base_region(tmp, years=[2017, 2019]), needle="2019")


def c_dates_reversed(tmp: Path) -> Case:
    raw = base_region(tmp, dates={"start": "2018-01-01", "end": "2017-06-01"})
    del raw["years"]
    return Case(raw, needle="dates")


def _labels(tmp: Path, path: Path | str) -> dict[str, Any]:
    raw = base_region(tmp)
    raw["facts"] = {"labels": {"path": str(path)}}
    return raw


def c_labels_wrong_columns(tmp: Path) -> Case:
    return Case(_labels(tmp, BAD / "labels_wrong_columns.csv"), needle="labels_wrong_columns.csv")


def c_labels_wrong_types(tmp: Path) -> Case:
    return Case(_labels(tmp, BAD / "labels_wrong_types.csv"), needle="labels_wrong_types.csv")


def c_labels_non_utf8(tmp: Path) -> Case:
    return Case(_labels(tmp, BAD / "labels_non_utf8.csv"), needle="labels_non_utf8.csv")


def c_labels_missing(tmp: Path) -> Case:
    return Case(_labels(tmp, tmp / "nolabels.csv"), needle="facts.labels.path")


def c_labels_build(tmp: Path) -> Case:  # `build` refuses before any tile is read
    return Case(
        _labels(tmp, BAD / "labels_wrong_columns.csv"), command="build", needle="labels_wrong_columns.csv"
    )


def c_output_is_file(tmp: Path) -> Case:
    (tmp / "out").write_text("a file where the output folder should be")
    return Case(base_region(tmp), needle="is a file")


def c_output_parent_is_file(tmp: Path) -> Case:
    (tmp / "afile").write_text("x")
    return Case(base_region(tmp, output={"dir": str(tmp / "afile" / "out")}), needle="is a file")


def c_output_not_writable(tmp: Path) -> Case:
    ro = tmp / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return Case(base_region(tmp, output={"dir": str(ro / "out")}), needle="not writable", root_skips=True)


def c_output_build_is_file(tmp: Path) -> Case:
    (tmp / "out").write_text("a file")
    return Case(base_region(tmp), command="build", needle="is a file")


def c_workers_negative(tmp: Path) -> Case:
    return Case(base_region(tmp), command="build", args=["--workers", "-1"], needle="--workers")


def c_workers_600(tmp: Path) -> Case:
    return Case(base_region(tmp), command="build", args=["--workers", "600"], needle="--workers")


def c_workers_zero_in_region(tmp: Path) -> Case:
    return Case(base_region(tmp, workers=0), needle="workers")


def c_set_not_a_section(tmp: Path) -> Case:
    return Case(base_region(tmp), args=["--set", "name.x=1"], needle="--set")


def c_set_without_equals(tmp: Path) -> Case:
    return Case(base_region(tmp), args=["--set", "chip.size"], needle="--set")


def c_scenes_none_found(tmp: Path) -> Case:
    raw = base_region(tmp)
    raw["scenes"]["paths"] = [str(tmp / "empty" / "*.tif")]
    return Case(raw, needle="scenes")


def c_scene_garbage(tmp: Path) -> Case:
    p = tmp / "scenes" / "S1A__IW___D_20170601T054359_VV.tif"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    return Case(_synthetic_region(tmp, p), needle=p.name.lower())


def c_scene_no_georef(tmp: Path) -> Case:
    p = _scene(tmp, "nogeo.tif", _noise(), crs=None, transform=None)
    return Case(_synthetic_region(tmp, p), needle="nogeo.tif")


def c_scene_wrong_crs(tmp: Path) -> Case:  # the port's UTM numbers read in the wrong zone: not in the area
    p = _scene(tmp, "wrongcrs.tif", _noise(), crs="EPSG:32610", transform=PORT_UTM)
    return Case(_synthetic_region(tmp, p), needle="outside every scene")


def c_scene_gcps_out_of_range(tmp: Path) -> Case:
    gcps = [
        GroundControlPoint(row=r, col=c, x=x, y=y)
        for r, c, x, y in [(0, 0, 4.6, 95.0), (0, 256, 4.8, 95.0), (256, 0, 4.6, 94.0), (256, 256, 4.8, 94.0)]
    ]
    p = _scene(tmp, "badgcps.tif", _noise(), crs="EPSG:4326", transform=None, gcps=gcps)
    return Case(_synthetic_region(tmp, p), needle="badgcps.tif")


def c_scene_truncated(tmp: Path) -> Case:
    p = _scene(tmp, "truncated.tif", _noise(512, 512), crs="EPSG:32631", transform=PORT_UTM, cog=True)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.6)])  # the header reads, later tiles do not
    return Case(_synthetic_region(tmp, p, bbox=PORT_BBOX), command="build", needle="truncated.tif", forbid=())


def c_scene_all_nodata(tmp: Path) -> Case:
    p = _scene(
        tmp,
        "nodata.tif",
        np.full((256, 256), -99.0, np.float32),
        crs="EPSG:32631",
        transform=PORT_UTM,
        nodata=-99.0,
    )
    return Case(_synthetic_region(tmp, p), command="build", expect="reject", reason="nodata")


def c_scene_nan(tmp: Path) -> Case:
    p = _scene(tmp, "nan.tif", np.full((256, 256), np.nan, np.float32), crs="EPSG:32631", transform=PORT_UTM)
    return Case(_synthetic_region(tmp, p), command="build", expect="reject", reason="nodata")


def c_scene_polar(tmp: Path) -> Case:  # 85 N: no AlphaEarth anchor can be valid there
    t = Affine(0.002, 0.0, -0.2, 0.0, -0.0005, 85.1)
    p = _scene(tmp, "polar.tif", _noise(200, 200), crs="EPSG:4326", transform=t)
    return Case(
        _synthetic_region(tmp, p, bbox=[-1.0, 84.9, 1.0, 85.2]),
        command="build",
        expect="reject",
        reason="no_valid_anchor",
    )


def c_scene_antimeridian(tmp: Path) -> Case:  # UTM 60N, 10 N: the scene crosses 180 degrees
    t = Affine(100.0, 0.0, 820000.0, 0.0, -100.0, 1120000.0)
    p = _scene(tmp, "antimeridian.tif", _noise(200, 200), crs="EPSG:32660", transform=t)
    return Case(
        _synthetic_region(tmp, p, bbox=[179.0, 9.0, -179.0, 11.0]),
        command="build",
        expect="reject",
        reason="antimeridian",
    )


def c_aef_corrupt_tile(tmp: Path) -> Case:
    root = tmp / "aef"
    shutil.copytree(AEF, root)
    tile = next(root.glob("2017/*/*.tiff"))
    data = bytearray(tile.read_bytes())
    cut = len(data) // 3
    data[cut:] = b"\x00" * (len(data) - cut)  # same size, pixels gone: fails when a block is read
    tile.write_bytes(bytes(data))
    raw = base_region(tmp)
    raw["embeddings"]["root"] = str(root)
    rel = tile.relative_to(root).as_posix()
    return Case(raw, command="build", needle=rel.lower(), forbid=(SCENE_ADVICE, "scene file is corrupt"))


def c_disk_full(tmp: Path) -> Case:
    return Case(base_region(tmp), command="build", needle="output folder", fsize_limit=16 * 1024)


def c_broken_pipe(tmp: Path) -> Case:
    return Case(base_region(tmp), expect="ok", closed_stdout=True)


CASES: dict[str, Callable[[Path], Case]] = {
    name.removeprefix("c_"): fn
    for name, fn in sorted(globals().items())
    if name.startswith("c_") and callable(fn)
}
