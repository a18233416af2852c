"""The plain, hashable recipes of computePixels requests: `Grid` (CRS, affine, size; cut in halves when a
request is too large), `ImageSpec` (an asset or a collection's mosaic, its bands, the sentinel of masked
pixels) and `PixelRequest` (the two together: planned size, limits, cache key). A recipe becomes an `ee`
expression only when a fetch is needed, so the cache is consulted before `ee` is initialised."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

MAX_REQUEST_BYTES = 48 * 2**20  # computePixels: "Total request size ... must be <= 50331648 bytes"
MAX_GRID_SIDE = 32768  # computePixels: pixels per side
FILE_FORMAT = "NPY"
_CACHE_VERSION = "ee-pixels/1"


@dataclass(frozen=True, slots=True)
class Grid:
    """A computePixels pixel grid: CRS, affine (a, b, c, d, e, f) and size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def to_ee(self) -> dict[str, Any]:
        a, b, c, d, e, f = self.transform
        return {
            "dimensions": {"width": int(self.width), "height": int(self.height)},
            "affineTransform": {
                "scaleX": a,
                "shearX": b,
                "translateX": c,
                "shearY": d,
                "scaleY": e,
                "translateY": f,
            },
            "crsCode": self.crs,
        }

    def sub(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The grid of a sub-window (rows [row_off, row_off + height), columns likewise)."""
        a, b, c, d, e, f = self.transform
        return Grid(
            self.crs,
            (a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off),
            int(width),
            int(height),
        )

    def halves(self) -> tuple[tuple[int, int, Grid], tuple[int, int, Grid]]:
        """Two halves along the longer side, each with its (row_off, col_off) in this grid."""
        if self.width >= self.height:
            w0 = self.width // 2
            return (0, 0, self.sub(0, 0, self.height, w0)), (
                0,
                w0,
                self.sub(0, w0, self.height, self.width - w0),
            )
        h0 = self.height // 2
        return (0, 0, self.sub(0, 0, h0, self.width)), (h0, 0, self.sub(h0, 0, self.height - h0, self.width))


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """An Earth Engine image as a plain recipe: one asset (`image`), or the mosaic of a collection's images
    starting in [start, end); the bands to select; masked pixels unmasked to `sentinel` (so they never
    come back as zeros); values cast to float32."""

    bands: tuple[str, ...]
    sentinel: float
    image: str | None = None
    collection: str | None = None
    start: str | None = None
    end: str | None = None
    bytes_per_value: int = 4  # float32 (`toFloat`), for planning request sizes

    def __post_init__(self) -> None:
        if (self.image is None) == (self.collection is None):
            raise ValueError("ImageSpec needs exactly one of image or collection")

    def to_ee(self) -> Any:
        import ee

        if self.image is not None:
            img = ee.Image(self.image)
        else:
            col = ee.ImageCollection(self.collection)
            if self.start is not None and self.end is not None:
                col = col.filterDate(self.start, self.end)
            img = col.mosaic()
        # float32 on the wire: the 48 MiB limit and our size planning count 4 bytes per value
        return img.select(list(self.bands)).unmask(self.sentinel, False).toFloat()


@dataclass(frozen=True, slots=True)
class PixelRequest:
    image: ImageSpec
    grid: Grid

    @property
    def nbytes(self) -> int:
        """Planned response size (what Earth Engine's 48 MiB limit counts)."""
        return self.grid.width * self.grid.height * len(self.image.bands) * self.image.bytes_per_value

    def cache_key(self) -> str:
        blob = json.dumps(
            {
                "v": _CACHE_VERSION,
                "image": asdict(self.image),
                "grid": self.grid.to_ee(),
                "format": FILE_FORMAT,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def fits(self, max_bytes: int = MAX_REQUEST_BYTES, max_side: int = MAX_GRID_SIDE) -> bool:
        return self.nbytes <= max_bytes and max(self.grid.width, self.grid.height) <= max_side

    def halves(self) -> tuple[tuple[int, int, PixelRequest], tuple[int, int, PixelRequest]]:
        (r0, c0, g0), (r1, c1, g1) = self.grid.halves()
        return (r0, c0, PixelRequest(self.image, g0)), (r1, c1, PixelRequest(self.image, g1))
