"""Re-export of the AlphaEarth code <-> value mapping, which lives in schemas/aef.py because the
`aef_codes` column is part of the contract: the trainer de-quantizes with the same function."""

from schemas.aef import NODATA, dequantize, quantize

__all__ = ["NODATA", "dequantize", "quantize"]
