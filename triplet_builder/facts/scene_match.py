"""Which scene a label belongs to: by a scene / product id, or by time.

The id rule (strict: a wrong match is worse than none). A label's id and each of a scene's names (its
`scene_id` and the file names of its `uris`) are normalised: the folder or URL prefix is dropped, then
the container suffixes `.zip`, `.SAFE`, `.tif` / `.tiff` are taken off, and the text is upper-cased.
They match when

1. the normalised texts are equal (e.g. an xView3 scene id equal to the file stem), or
2. both parse as Sentinel-1 names of one acquisition (triplet_builder.sources.names: ESA SAFE product,
   SAFE measurement file, pyroSAR / GAMMA name) with the same mission, mode and start time to the
   second: `S1A_IW_GRDH_1SDV_20170309T054356_..._6D00.SAFE` and
   `S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db` are one acquisition.

Never by a prefix, a substring, a date alone or the product type (`SceneRef.product`, e.g. "GRD").

The time rule: |label time - scene start (UTC)| <= tolerance. Sentinel-1 products of one pass start
within minutes of each other, while the next pass over the same place is hours away (ascending vs
descending, about 12 h) or days away (the same orbit): the default 600 s keeps one pass and never the
next. Times without a zone are read as UTC.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath

from triplet_builder.record import SceneRef
from triplet_builder.sources.names import parse_name

DEFAULT_TIME_TOLERANCE_S = 600.0
_SUFFIXES = (".zip", ".safe", ".tiff", ".tif")
_ACQUISITION_CONVENTIONS = {"esa-safe", "safe-measurement", "pyrosar"}

AcquisitionKey = tuple[str, str, datetime]  # sensor, mode, start (UTC, whole seconds)


def normalise_id(name: str) -> str:
    """A scene / product id without folder, URL prefix or container suffixes, upper-cased."""
    s = str(name).strip().replace("\\", "/").rstrip("/")
    s = PurePosixPath(s).name if "/" in s else s
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if s.lower().endswith(suffix) and len(s) > len(suffix):
                s, changed = s[: -len(suffix)], True
    return s.upper()


def acquisition_key(name: str) -> AcquisitionKey | None:
    """(sensor, mode, start) of a Sentinel-1 product or file name; None for other names."""
    info = parse_name(str(name).strip().replace("\\", "/").rsplit("/", 1)[-1])
    if info is None or info.convention not in _ACQUISITION_CONVENTIONS or info.mode is None:
        return None
    return (info.sensor, info.mode.upper(), info.start)


def scene_names(scene: SceneRef) -> tuple[set[str], set[AcquisitionKey]]:
    """A scene's normalised names (scene_id, file names) and the acquisitions they name."""
    raw = [scene.scene_id, *scene.uris]
    names = {normalise_id(n) for n in raw if n}
    keys = {k for n in raw if n and (k := acquisition_key(n)) is not None}
    return names, keys


def id_matches(label_id: str, names: set[str], keys: set[AcquisitionKey]) -> bool:
    """Whether a label's scene id names the scene whose names / acquisition keys are given."""
    if not label_id.strip():
        return False
    if normalise_id(label_id) in names:
        return True
    key = acquisition_key(label_id)
    return key is not None and key in keys
