"""The AlphaEarth COG tile index (`aef_index.parquet`): build it for a local folder, load it, resolve paths.

A root is the `annual` folder of the mirror layout, `{root}/{year}/{zone}/{hash}-{rowoff}-{coloff}.tiff`,
with `{root}/aef_index.parquet` beside the year folders. It is a local folder, an `https://` URL
(e.g. https://data.source.coop/tge-labs/aef/v1/annual) or an `s3://` URL
(e.g. s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual).

The index has the column layout of the public mirror's GeoParquet: fid, path, year, crs, utm_zone,
wgs84_west, wgs84_south, wgs84_east, wgs84_north, utm_west, utm_south, utm_east, utm_north, geom
(the WGS84 footprint polygon). Its `path` values are `s3://.../annual/{year}/{zone}/{file}`;
`resolve_path` maps them onto any root by the part after "/annual/".
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import CRS, Transformer

from triplet_builder.remote import USER_AGENT

logger = logging.getLogger(__name__)

INDEX_NAME = "aef_index.parquet"
MIRROR_PREFIX = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual"
INDEX_COLUMNS = (
    "fid",
    "path",
    "year",
    "crs",
    "utm_zone",
    "wgs84_west",
    "wgs84_south",
    "wgs84_east",
    "wgs84_north",
    "utm_west",
    "utm_south",
    "utm_east",
    "utm_north",
    "geom",
)
DEFAULT_USER_AGENT = USER_AGENT
CACHE_DIR = Path("~/.cache/sar-triplets/aef")

_YEAR_DIR = re.compile(r"^\d{4}$")
_ZONE_DIR = re.compile(r"^(?P<zone>\d{1,2})(?P<hemi>[NS])$")
# The Source Cooperative bucket is also served over plain https by data.source.coop.
_SOURCE_COOP_BUCKET = re.compile(r"^[a-z0-9-]+\.opendata\.source\.coop$")


def is_remote(root: str | Path) -> bool:
    """True for http(s)://, s3://, gs:// roots and GDAL /vsi*/ paths."""
    s = str(root)
    return s.startswith(("http://", "https://", "s3://", "gs://", "/vsi"))


def utm_zone_of_crs(crs: CRS) -> str:
    """'13N' for EPSG:32613, '33S' for EPSG:32733; ValueError for anything else."""
    epsg = crs.to_epsg()
    if epsg is not None and 32601 <= epsg <= 32660:
        return f"{epsg - 32600}N"
    if epsg is not None and 32701 <= epsg <= 32760:
        return f"{epsg - 32700}S"
    raise ValueError(f"CRS {crs.to_string()} is not a WGS 84 / UTM zone (EPSG:326xx or 327xx)")


def _footprint(crs: CRS, west: float, south: float, east: float, north: float) -> shapely.Polygon:
    """The WGS84 polygon of a UTM box, its edges densified so the curved outline is kept."""
    ring = shapely.segmentize(shapely.box(west, south, east, north), max(east - west, north - south) / 16)
    xy = shapely.get_coordinates(ring)
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1])
    return shapely.Polygon(np.column_stack([lon, lat]))


def build_index(root: str | Path, path_prefix: str = MIRROR_PREFIX) -> Path:
    """Scan `{root}/{year}/{zone}/*.tif(f)` and write `{root}/aef_index.parquet` (GeoParquet).

    `path` values are written as the mirror writes them: `{path_prefix}/{year}/{zone}/{file}`.
    Raises ValueError when a file's CRS is not the UTM zone of its folder, or when no file is found.
    """
    root = Path(root)
    rows: list[dict[str, object]] = []
    geoms: list[shapely.Polygon] = []
    prefix = path_prefix.rstrip("/")
    year_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _YEAR_DIR.match(p.name))
    for year_dir in year_dirs:
        zone_dirs = sorted(p for p in year_dir.iterdir() if p.is_dir() and _ZONE_DIR.match(p.name))
        for zone_dir in zone_dirs:
            files = sorted(p for p in zone_dir.iterdir() if p.is_file() and p.suffix in (".tif", ".tiff"))
            for f in files:
                with rasterio.open(f) as ds:
                    if ds.crs is None:
                        raise ValueError(f"{f} has no CRS; an AlphaEarth tile is in a UTM projection")
                    crs = CRS.from_user_input(ds.crs.to_wkt())
                    b = ds.bounds  # bottom > top for the bottom-up files: take min / max
                    west, east = min(b.left, b.right), max(b.left, b.right)
                    south, north = min(b.bottom, b.top), max(b.bottom, b.top)
                zone = utm_zone_of_crs(crs)
                if zone != zone_dir.name:
                    raise ValueError(f"{f} is in UTM zone {zone} (its CRS) but stored under {zone_dir.name}/")
                geom = _footprint(crs, west, south, east, north)
                w84, s84, e84, n84 = geom.bounds
                rows.append(
                    {
                        "fid": len(rows) + 1,
                        "path": f"{prefix}/{year_dir.name}/{zone_dir.name}/{f.name}",
                        "year": int(year_dir.name),
                        "crs": f"EPSG:{crs.to_epsg()}",
                        "utm_zone": zone,
                        "wgs84_west": w84,
                        "wgs84_south": s84,
                        "wgs84_east": e84,
                        "wgs84_north": n84,
                        "utm_west": float(west),
                        "utm_south": float(south),
                        "utm_east": float(east),
                        "utm_north": float(north),
                    }
                )
                geoms.append(geom)
    if not rows:
        raise ValueError(
            f"no tiles found under {root}: expected {root}/{{year}}/{{zone}}/*.tiff (e.g. 2024/13N/)"
        )
    df = pd.DataFrame(rows).astype({"fid": "int64", "year": "int64"})
    gdf = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"), crs="EPSG:4326")
    gdf = gdf.rename_geometry("geom")[list(INDEX_COLUMNS)]
    out = root / INDEX_NAME
    tmp = root / f".{INDEX_NAME}.tmp"
    gdf.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    logger.info("wrote %s (%d tiles)", out, len(gdf))
    return out


def _https_url(root: str) -> str:
    """The https URL of a remote root (s3:// of the Source Cooperative bucket -> data.source.coop)."""
    if root.startswith(("http://", "https://")):
        return root
    if root.startswith("s3://"):
        bucket, _, key = root[len("s3://") :].partition("/")
        if _SOURCE_COOP_BUCKET.match(bucket):
            return f"https://data.source.coop/{key}"
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    if root.startswith("gs://"):
        return f"https://storage.googleapis.com/{root[len('gs://') :]}"
    if root.startswith("/vsicurl/"):
        return root[len("/vsicurl/") :]
    raise ValueError(f"cannot turn {root} into an https URL")


def _download_index(url: str, cache_dir: Path, user_agent: str) -> Path:
    """Download `url` once into `cache_dir` (named by a hash of the URL); later calls reuse it."""
    cache_dir = cache_dir.expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}_{INDEX_NAME}"
    if target.exists():
        return target
    logger.info("downloading %s -> %s", url, target)
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-")
    try:
        with urllib.request.urlopen(request, timeout=120) as response, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def index_location(
    root: str | Path, *, cache_dir: str | Path | None = None, user_agent: str = DEFAULT_USER_AGENT
) -> Path:
    """The local file holding the index of `root` (downloaded once into the cache for a remote root)."""
    if not is_remote(root):
        path = Path(root) / INDEX_NAME
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: run triplet_builder.embeddings.index.build_index({str(root)!r}) first"
            )
        return path
    url = _https_url(str(root)).rstrip("/") + "/" + INDEX_NAME
    return _download_index(url, Path(cache_dir) if cache_dir is not None else CACHE_DIR, user_agent)


def load_index(
    root: str | Path,
    *,
    year: int | None = None,
    cache_dir: str | Path | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
) -> gpd.GeoDataFrame:
    """Read `{root}/aef_index.parquet` (all rows, or those of one `year`) as a GeoDataFrame.

    A remote root's index (about 70 MB for the public mirror) is downloaded once with an explicit
    User-Agent (the mirror answers 403 to Python's default one) into ~/.cache/sar-triplets/aef/.
    """
    path = index_location(root, cache_dir=cache_dir, user_agent=user_agent)
    kwargs: dict[str, object] = {}
    if year is not None:
        kwargs["filters"] = [("year", "==", int(year))]
    return gpd.read_parquet(path, **kwargs)


def resolve_path(root: str | Path, index_path: str) -> str:
    """Map an index `path` to a GDAL-openable path under `root` by its part after "/annual/".

    Local root -> a local path; https root -> "/vsicurl/https://..."; s3 root -> "/vsis3/bucket/...";
    gs root -> "/vsigs/...". A path without "/annual/" is taken as relative to the root.
    """
    marker = "/annual/"
    rel = index_path.split(marker, 1)[1] if marker in index_path else index_path.lstrip("/")
    s = str(root)
    if s.startswith("/vsi"):
        return s.rstrip("/") + "/" + rel
    if s.startswith(("http://", "https://")):
        return "/vsicurl/" + s.rstrip("/") + "/" + rel
    if s.startswith("s3://"):
        return "/vsis3/" + s[len("s3://") :].rstrip("/") + "/" + rel
    if s.startswith("gs://"):
        return "/vsigs/" + s[len("gs://") :].rstrip("/") + "/" + rel
    return str(Path(s) / rel)
