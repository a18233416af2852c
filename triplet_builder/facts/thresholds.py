"""Water and strong-scatterer thresholds by backscatter convention and polarisation, in one table, plus
the scene-adaptive alternative (Otsu's bimodal split of the scene's dB histogram).

The table (dB), C-band (Sentinel-1), for the 3 x 3-median-filtered pixels the surface facts threshold:

| convention | water co-pol | water cross-pol | bright co-pol | bright cross-pol |
|---|---|---|---|---|
| sigma0 | -18 | -24 | 0 | -7 |
| gamma0 | -17 | -23 | +1 | -6 |
| beta0  | -16 | -22 | +2 | -5 |

Reasoning. Calm open water is a specular reflector: its C-band co-pol sigma0 lies well below -20 dB,
cross-pol below about -25 dB, while vegetated and bare land lie around -15..-5 dB (VV) and -25..-12 dB
(VH); -18 / -24 dB sit in the gap and are the fixed thresholds of common Sentinel-1 flood-mapping
practice (e.g. Twele et al. 2016, IJRS 37(13), fixed-threshold baselines; UN-SPIDER recommended
practice). Strong scatterers (double bounce of built structures, ships) exceed 0 dB in co-pol sigma0 and
about -7 dB in cross-pol (cross-pol is ~7 dB weaker over urban double bounce). The conventions differ by
the reference area only: gamma0 = sigma0 / cos(theta) and beta0 = sigma0 / sin(theta) (ESA,
Sentinel-1 radiometric calibration of Level-1 products, ESA-EOPG-CSCOP-TN-0002), which over the
Sentinel-1 IW incidence range theta = 30..46 deg adds +0.6..+1.6 dB (gamma0, about +1) and
+1.6..+3.0 dB (beta0, about +2) to the same surface; terrain-flattened gamma0 (RTC, Small 2011) equals
gamma0 on flat ground, where water lies. The table shifts the sigma0 entries by those amounts.

`unknown` convention: the most conservative entry, i.e. the one that claims the least: the LOWEST water
threshold (sigma0's) and the HIGHEST bright threshold (beta0's), so that no chip is called water or built
up on the strength of a convention nobody stated. `facts.water_threshold_db: otsu` replaces the table's
water thresholds by Otsu splits of the scene (either convention), computed once per scene from a
decimated read of the whole scene so that all chips of a scene agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CO_POL = ("VV", "HH")
CROSS_POL = ("VH", "HV")

# (convention, "co-pol" | "cross-pol") -> (water dB, bright dB); see the module docstring
TABLE: dict[tuple[str, str], tuple[float, float]] = {
    ("sigma0", "co-pol"): (-18.0, 0.0),
    ("sigma0", "cross-pol"): (-24.0, -7.0),
    ("gamma0", "co-pol"): (-17.0, 1.0),
    ("gamma0", "cross-pol"): (-23.0, -6.0),
    ("beta0", "co-pol"): (-16.0, 2.0),
    ("beta0", "cross-pol"): (-22.0, -5.0),
}


def pol_class(pol: str) -> str:
    """co-pol for VV/HH and for an unknown polarisation (the usual single band), cross-pol for VH/HV."""
    return "cross-pol" if pol.upper() in CROSS_POL else "co-pol"


def table_entry(backscatter: str, pol: str) -> tuple[float, float, str]:
    """(water dB, bright dB, source) for a band of `pol` in convention `backscatter`; `unknown` (or any
    convention not in the table) takes the most conservative entry of its polarisation class."""
    cls = pol_class(pol)
    if (backscatter, cls) in TABLE:
        water, bright = TABLE[(backscatter, cls)]
        return water, bright, f"table:{backscatter}/{cls}"
    rows = [v for (_conv, c), v in TABLE.items() if c == cls]
    water = min(w for w, _ in rows)
    bright = max(b for _, b in rows)
    return water, bright, f"table:unknown/{cls} (most conservative)"


def dual_pol_pair(polarisations: tuple[str, ...]) -> tuple[int, int] | None:
    """(co-pol index, cross-pol index) when the scene has both, else None."""
    up = [p.upper() for p in polarisations]
    co = next((i for i, p in enumerate(up) if p in CO_POL), None)
    cross = next((i for i, p in enumerate(up) if p in CROSS_POL), None)
    return None if co is None or cross is None else (co, cross)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (Otsu 1979) of the finite values: the histogram split maximising the between-class
    variance. Returns the upper edge of the last bin of the lower class (values < t are the lower class).

    scikit-image's threshold_otsu is not a dependency; this is the same computation on a `bins`-bin
    histogram over [min, max] (bin centres as class values).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to threshold")
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(counts)[:-1].astype(np.float64)  # (bins-1,) pixels at or below each split
    w1 = v.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (float((counts * centres).sum()) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    k = int(np.argmax(between))  # first maximum: deterministic
    return float(edges[k + 1])


@dataclass(frozen=True)
class Thresholds:
    """The thresholds one scene's chips are judged with, and where each comes from."""

    water_db: float  # of the reference band (first co-pol band, else the first band)
    water_cross_db: float | None  # of the cross-pol band when the dual-pol rule applies, else None
    bright_db: float  # of the reference band
    water_source: str
    bright_source: str


def resolve(
    backscatter: str,
    polarisations: tuple[str, ...],
    ref: int,
    water_config: float | str | None,
    bright_config: float | None,
    scene_otsu: dict[int, float] | None = None,
) -> Thresholds:
    """Thresholds for a scene: a configured number wins; `otsu` takes `scene_otsu` (band index -> split of
    the scene histogram); otherwise the table by convention and polarisation. Dual-pol scenes (a co-pol and
    a cross-pol band) also get the cross-pol water threshold of the same origin."""
    pair = dual_pol_pair(polarisations)
    ref_pol = polarisations[ref] if polarisations else "UNKNOWN"
    water, bright, source = table_entry(backscatter, ref_pol)
    cross = table_entry(backscatter, polarisations[pair[1]])[0] if pair else None
    water_source = source
    if isinstance(water_config, (int, float)):
        water, water_source = float(water_config), "config"
        cross = None  # one configured number: the reference band decides alone, as before
    elif water_config == "otsu":
        if scene_otsu is None or ref not in scene_otsu:
            raise ValueError("water_threshold_db: otsu needs the scene's Otsu split of the reference band")
        water, water_source = round(scene_otsu[ref], 2), "otsu:scene"
        if pair is not None:
            cross = round(scene_otsu[pair[1]], 2)
    bright_source = source
    if bright_config is not None:
        bright, bright_source = float(bright_config), "config"
    return Thresholds(water, cross, bright, water_source, bright_source)
