"""Sentinel-1 file-name conventions, parsed by verbose regexes with named groups.

Recognised: ESA SAFE product names, SAFE measurement files, OPERA RTC-S1 products and pyroSAR / GAMMA
processed names (e.g. S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

MISSIONS = {"S1A": "Sentinel-1A", "S1B": "Sentinel-1B", "S1C": "Sentinel-1C", "S1D": "Sentinel-1D"}

_ESA_PRODUCT = re.compile(
    r"""
    (?P<mission>S1[ABCD])_
    (?P<mode>IW|EW|SM|WV|S[1-6])_
    (?P<product>GRD|SLC|RAW|OCN)(?P<resolution>[FHM_])_
    (?P<level>\d)(?P<klass>[SA])(?P<pols>SH|SV|DH|DV|HH|HV|VV|VH)_
    (?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_
    (?P<abs_orbit>\d{6})_(?P<datatake>[0-9A-F]{6})_(?P<unique>[0-9A-F]{4})
    """,
    re.VERBOSE,
)

_SAFE_MEASUREMENT = re.compile(
    r"""
    (?P<mission>s1[abcd])-(?P<swath>iw|ew|wv|s[1-6])-(?P<product>grd|slc)-
    (?P<pol>vv|vh|hh|hv)-(?P<start>\d{8}t\d{6})-(?P<stop>\d{8}t\d{6})-
    (?P<abs_orbit>\d{6})-(?P<datatake>[0-9a-f]{6})-(?P<image>\d{3})
    """,
    re.VERBOSE,
)

_OPERA_RTC = re.compile(
    r"""
    OPERA_L2_RTC-S1_
    (?P<burst>T\d{3}-\d{6}-(?P<mode>IW|EW)[1-5])_
    (?P<start>\d{8}T\d{6})Z_(?P<processed>\d{8}T\d{6})Z_
    (?P<mission>S1[ABCD])_(?P<posting>\d+)_v(?P<version>[\d.]+)
    (?:_(?P<pol>VV|VH|HH|HV))?
    """,
    re.VERBOSE,
)

_PYROSAR = re.compile(
    r"""
    (?P<mission>S1[ABCD])_{1,2}(?P<mode>IW|EW|SM|WV)_{1,3}(?P<orbit>[AD])_
    (?P<start>\d{8}T\d{6})
    (?:_(?P<pol>VV|VH|HH|HV))?
    (?P<steps>(?:_[A-Za-z0-9]+)*)
    """,
    re.VERBOSE,
)

_POL_TOKEN = re.compile(r"(?<![A-Za-z])(?P<pol>VV|VH|HH|HV|vv|vh|hh|hv)(?![A-Za-z])")


@dataclass(frozen=True)
class NameInfo:
    convention: str
    sensor: str
    mode: str | None
    start: datetime
    polarisation: str | None
    orbit_direction: str | None
    scale: str | None  # a scale the name declares ("db"), if any
    backscatter: str | None
    product: str | None
    scene_key: str  # the name with the polarisation taken out: files of one scene share it


def _ts(s: str) -> datetime:
    return datetime.strptime(s.upper(), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def _without_pol(name: str, m: re.Match[str]) -> str:
    if m.groupdict().get("pol") and m.start("pol") >= 0:
        return name[: m.start("pol")] + "{pol}" + name[m.end("pol") :]
    return name


def parse_name(name: str) -> NameInfo | None:
    """Parse a file or product name; None when no known convention matches."""
    if m := _OPERA_RTC.search(name):
        return NameInfo(
            "opera-rtc",
            MISSIONS[m["mission"]],
            m["mode"],
            _ts(m["start"]),
            m["pol"],
            None,
            "linear_power",
            "gamma0",
            "RTC",
            _without_pol(name, m),
        )
    if m := _ESA_PRODUCT.search(name):
        pols = m["pols"]
        return NameInfo(
            "esa-safe",
            MISSIONS[m["mission"]],
            m["mode"],
            _ts(m["start"]),
            pols if pols in {"HH", "HV", "VV", "VH"} else None,
            None,
            None,
            None,
            m["product"],
            name,
        )
    if m := _SAFE_MEASUREMENT.search(name):
        return NameInfo(
            "safe-measurement",
            MISSIONS[m["mission"].upper()],
            m["swath"].upper(),
            _ts(m["start"]),
            m["pol"].upper(),
            None,
            "amplitude",
            None,
            m["product"].upper(),
            _without_pol(name, m),
        )
    if m := _PYROSAR.search(name):
        steps = (m["steps"] or "").lower().split("_")
        # pyroSAR's GAMMA workflow (pyroSAR/gamma/util.py, geocode) multiplies the calibrated MLI by the
        # pixel-area ratio of gamma0 RTC (Small 2011) before geocoding: older releases named that step
        # `norm` (..._grd_mli_geo_norm_db.tif), current ones `gamma0-rtc`; both are terrain-flattened gamma0.
        # pyroSAR's SNAP names carry the reference area the same way (`gamma0-rtc`, `sigma0-elp`, ...).
        # Without such a token the name states no convention: None, never a guess.
        backscatter = "gamma0" if "norm" in steps else None
        for step in steps:
            conv = step.split("-", 1)[0]
            if backscatter is None and conv in {"sigma0", "gamma0", "beta0"}:
                backscatter = conv
        return NameInfo(
            "pyrosar",
            MISSIONS[m["mission"]],
            m["mode"],
            _ts(m["start"]),
            m["pol"],
            {"A": "ascending", "D": "descending"}[m["orbit"]],
            "db" if "db" in steps else None,
            backscatter,
            "GRD" if "grd" in steps else None,
            _without_pol(name, m),
        )
    return None


def pol_in_name(name: str) -> str | None:
    m = _POL_TOKEN.search(name)
    return m["pol"].upper() if m else None
