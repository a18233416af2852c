"""Every field of a remote source's config block reaches the client that uses it (the region file's
`earthengine:` block, `embeddings:` for the COG mirror and Earth Engine). Values differ from the defaults,
so a dropped field shows as the default."""

from __future__ import annotations

from pathlib import Path

from triplet_builder.config import EarthEngineConfig, EmbeddingConfig
from triplet_builder.earthengine import ClientSettings
from triplet_builder.stages.embed import make_provider

EE = {
    "project": "my-project",
    "service_account_key": "/keys/sa.json",
    "high_volume": False,
    "url": "http://127.0.0.1:9/ee",
    "max_concurrent": 3,
    "timeout_s": 7.5,
    "max_retries": 2,
    "backoff_s": 0.25,
    "max_backoff_s": 4.0,
}


def test_earthengine_settings_take_every_config_field(tmp_path: Path) -> None:
    cfg = EarthEngineConfig(**EE)
    defaults = EarthEngineConfig()
    assert all(getattr(defaults, k) != v for k, v in EE.items())  # a dropped field would show
    s = ClientSettings.from_config(cfg, tmp_path)
    assert {k: getattr(s, k) for k in EE} == EE
    assert s.cache_dir == str(tmp_path / "earthengine")


def test_cog_provider_takes_root_synthetic_and_cache_dir(tmp_path: Path) -> None:
    p = make_provider(
        EmbeddingConfig(type="cog", root="https://example.org/aef", synthetic=True), cache_dir=tmp_path
    )
    assert (p.root, p.synthetic, p.cache_dir) == ("https://example.org/aef", True, str(tmp_path / "cog"))  # type: ignore[attr-defined]
    assert "SYNTHETIC" in p.description


def test_earthengine_provider_takes_collection_and_the_earthengine_block(tmp_path: Path) -> None:
    cfg = EmbeddingConfig(type="earthengine", collection="TEST/EMBEDDINGS")
    p = make_provider(cfg, earthengine=EarthEngineConfig(**EE), cache_dir=tmp_path)
    assert p.collection == "TEST/EMBEDDINGS"  # type: ignore[attr-defined]
    assert p.settings == ClientSettings.from_config(EarthEngineConfig(**EE), tmp_path)  # type: ignore[attr-defined]
