"""A scene with no file behind it, for tests of the stages that use only its georeferencing (land cover,
OSM, AlphaEarth anchors, the map-pixel lattice): a Sentinel-1A IW VV scene in dB on an affine grid."""

from __future__ import annotations

from datetime import datetime, timezone

from triplet_builder.record import Backscatter, BandRef, GeorefKind, Scale, SceneRef


def virtual_scene(
    *,
    crs: str,
    width: int,
    height: int,
    pixel_size_m: float,
    transform: tuple[float, float, float, float, float, float],
    scene_id: str = "virtual",
    acquired: datetime = datetime(2021, 6, 15, tzinfo=timezone.utc),
    acquired_source: str = "test",
    uri: str = "virtual://none",
) -> SceneRef:
    return SceneRef(
        scene_id=scene_id,
        bands=(BandRef(uri, 1, "VV"),),
        acquired=acquired,
        acquired_source=acquired_source,
        sensor="Sentinel-1A",
        mode="IW",
        orbit_direction="ascending",
        scale=Scale.DB,
        scale_source="declared",
        backscatter=Backscatter.SIGMA0,
        georef=GeorefKind.AFFINE,
        crs=crs,
        width=width,
        height=height,
        pixel_size_m=pixel_size_m,
        nodata=None,
        transform=transform,
    )
