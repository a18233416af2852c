"""triplet_builder: the library of stages, sources and writers that turns SAR scenes into
SAR chip / text / AlphaEarth-embedding triplets (Parquet shards)."""

__version__ = "0.2.1"
