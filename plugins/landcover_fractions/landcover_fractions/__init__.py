"""Example annotation stage of sar-triplets: land-cover class fractions per chip and per 3 x 3 cell."""

from landcover_fractions.stage import LandcoverConfig, LandcoverFractions

__all__ = ["LandcoverConfig", "LandcoverFractions"]
