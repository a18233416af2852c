"""The regexes of the consistency checker (verbose, with named groups), compiled once."""

from __future__ import annotations

import re

from triplet_builder.text.conventions import (
    HEDGE_WORDS,
    NUMBER_WORDS,
    REFUSAL_PATTERNS,
)

MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
SEASONS = ("winter", "spring", "summer", "autumn")
COMPASS_DEG = {"N": 0, "NE": 45, "E": 90, "SE": 135, "S": 180, "SW": 225, "W": 270, "NW": 315}
# Capitalised words that are fine in any caption (SAR vocabulary, units, compass, months).
COMMON_NAMES = frozenset(
    {"sar", "cfar", "utc", "db", "vv", "vh", "hh", "hv", "iw", "ew", "sm", "wv", "grd", "slc", "rtc",
     "json", "sigma", "gamma", "beta", "north", "south", "east", "west", "n", "s", "e", "w", "ne",
     "nw", "se", "sw", "km", "m"}
    | {m.lower() for m in MONTHS}
)  # fmt: skip
SENSOR_RE = re.compile(
    r"""\b(?P<sensor>Sentinel-?1[A-D]?|Gaofen-?3|GF-?3|TerraSAR-X|TanDEM-X|PAZ|COSMO-SkyMed|
    RADARSAT-?2|RCM|ALOS-?2|PALSAR-?2|ICEYE|Capella|Umbra|NISAR|SAOCOM|Envisat|ERS-?[12])(?![\w-])""",
    re.X | re.I,
)


# == regexes =======================================================================================
HEDGE_RE = re.compile(r"\b(?P<word>" + "|".join(HEDGE_WORDS) + r")\b", re.I)
REFUSAL_RE = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.I)
NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"

PERCENT_RE = re.compile(
    rf"""
    (?:(?P<cmp>less\s+than|fewer\s+than|under|below|more\s+than|over|above|at\s+least|at\s+most
        |up\s+to|nearly|almost|about|around|roughly|approximately|some|close\s+to)\s+)?
    (?<![\d.])
    (?:
        between\s+(?P<blo>{NUM})\s*(?:%|per\s*cent|percent)?\s+and\s+(?P<bhi>{NUM})
      | (?P<rlo>{NUM})\s*%?\s*(?:-|–|to)\s*(?P<rhi>{NUM})
      | (?P<num>{NUM})
    )
    \s*(?:%|per\s*cent\b|percent\b)
    """,
    re.X | re.I,
)
# what every PERCENT_RE match ends with: a text without it states no percentage (one cheap scan first)
PERCENT_SIGN_RE = re.compile(r"%|per\s*cent", re.I)

MEASURE_RE = re.compile(
    rf"""
    (?<![\w.,])[-−]?(?P<a>{NUM})
    (?:\s*(?:km|m|[dD][bB])?\s*(?:-|–|\bto\b|\band\b)\s*[-−]?(?P<b>{NUM}))?
    \s*(?P<unit>kilomet(?:re|er)s?|km|met(?:re|er)s?|m|[dD][bB]|°)(?![^\W\d_])
    """,
    re.X,
)

# "W m × H m", "W by H m", "W km x H km": a size is width then height
SIZE_RE = re.compile(
    rf"""
    (?<![\w.,])(?P<a>{NUM})\s*(?:km|m)?\s*(?:×|\bx\b|\bby\b)\s*(?P<b>{NUM})
    \s*(?P<unit>km|m)(?![^\W\d_])
    """,
    re.X,
)

ISO_DATE_RE = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")
TEXT_DATE_RE = re.compile(
    rf"""
    (?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?
    \b(?P<month>{"|".join(MONTHS)})\b
    (?:\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b,?)?
    (?:\s+(?P<y>\d{{4}})\b)?
    """,
    re.X,
)
YEAR_RE = re.compile(
    r"(?<![\d.,×x-])\b(?P<y>19\d\d|20\d\d)\b(?![.,]?\d)(?!\s*(?:×|x\b|by\b|%|m\b|km\b|met|kilomet|dB|db|px|pixel|°))",
)
SEASON_RE = re.compile(r"\b(?P<season>winter|spring|summer|autumn)\b", re.I)
ORBIT_RE = re.compile(r"\b(?P<orbit>ascending|descending)\b", re.I)
POL_RE = re.compile(r"\b(?P<pol>VV|VH|HH|HV)\b")
# a backscatter convention named in the text: sigma0, gamma-nought, beta 0, σ0 / γ⁰ / β°
CONVENTION_RE = re.compile(
    r"\b(?P<word>sigma|gamma|beta)[-_ ]?(?:0|nought|naught|zero)\b|(?P<greek>[σγβ])\s?[0⁰°]", re.I
)
GREEK = {"σ": "sigma", "γ": "gamma", "β": "beta"}

CELL_LIST_RE = re.compile(
    r"""
    \b(?:grid\s+)?cells?\s*(?:\#\s*|no\.\s*|numbers?\s+)?
    (?P<items>\d+(?:\s*(?:,\s*(?:and\s+|or\s+)?|\band\b|\bor\b|&|\bto\b|\bthrough\b|-|–)\s*\d+)*)
    """,
    re.X | re.I,
)
CELL_ITEM_RE = re.compile(r"(?P<a>\d+)(?:\s*(?:-|–|\bto\b|\bthrough\b)\s*(?P<b>\d+))?")
V_POS = {"top": 0, "upper": 0, "centre": 1, "center": 1, "central": 1, "middle": 1, "bottom": 2, "lower": 2}
H_POS = {"left": 0, "centre": 1, "center": 1, "middle": 1, "right": 2}
POSITION_RE = re.compile(
    r"""
    \b(?P<v>top|upper|centre|center|central|middle|bottom|lower)[\s-]+(?P<h>left|centre|center|middle|right)\b
    | \b(?P<c>centre|center|central|middle)\s+cell\b
    """,
    re.X | re.I,
)

CLAUSE_SEP_RE = re.compile(r"[.!?](?=\s|$)|[;:]|\b(?:while|whereas|but)\b", re.I)
NEGATION = r"(?:no|not|without|none|zero|free\s+of|lacks?|lacking|nor)"
MOSTLY_RE = re.compile(
    r"\b(?:mostly|mainly|largely|predominantly|dominat\w*|majority|entirely|fully|completely|almost\s+all)\b",
    re.I,
)
# the whole chip said to be one surface ("entirely land", "all open water"): denies the other one
TOTAL_RE = re.compile(
    r"""\b(?:entirely|completely|fully|wholly|purely|solely|only|all)\s+(?:of\s+it\s+)?
    (?:(?:dry\s+)?(?P<land>land|ground)|(?:open\s+)?(?P<water>water|sea|ocean))\b""",
    re.X | re.I,
)
# an exclusive cell reference ("water lies only in cell 1"): the cells not named hold none
ONLY_RE = re.compile(r"\b(?:only|solely|exclusively)\b", re.I)
TOPIC_RES: dict[str, re.Pattern[str]] = {
    "water": re.compile(r"\bwaters?\b|\bsea\b|\bocean\b|\briver\b|\blake\b", re.I),
    "land": re.compile(r"\bland\b|\bground\b", re.I),
    "bright": re.compile(
        r"""\bbright(?!\s+(?:point|targets?|spots?|objects?)\b)\b|\bstrong(?:\s+\w+)?\s+(?:scatter\w*|backscatter|returns?|reflect\w*)
        |\bbuilt\b|\bbuildings?\b|\bstructures?\b|\bscatterers?\b""",
        re.I | re.X,
    ),
    "nodata": re.compile(
        r"\bno[\s-]data\b|\boutside\s+the\s+(?:scene|image|swath|footprint)\b|\binvalid\b", re.I
    ),
}
FIELD_TOPIC = {"targets": "target", "buildings": "bright", "water": "water"}
BOUNDARY_RE = re.compile(
    r"""\b(?:land\s*[/-]\s*water|water\s*[/-]\s*land)\s+(?:boundary|border|interface|edge|transition)\b
    |\bshore\s*lines?\b|\bcoast\s*lines?\b|\bwater\s*lines?\b""",
    re.X | re.I,
)
DIRECTION_RE = re.compile(
    r"""\b(?P<dir>north(?:[\s-]?(?:east|west))?|south(?:[\s-]?(?:east|west))?|east|west)(?:wards?)?\s+of\s+
    (?:the\s+(?:town|city|village|centre|center)\s+of\s+)?(?P<rest>[^\W\d_][^.;()]{0,80})""",
    re.X | re.I,
)
STOP_MODS = (
    r"of|in|on|at|by|with|within|from|to|into|onto|over|under|and|or|but|the|a|an|this|that|these|"
    r"those|its|their|is|are|was|were|be|been|has|have|had|hold|holds|contain|contains|containing|"
    r"show|shows|showing|lie|lies|sit|sits|cover|covers|per|cell|cells|grid|m|km|metres?|meters?|px|"
    r"pixels?|db|percent|x|long|wide|across|between|than|about|around|which|whose|where|each|every|"
    r"only|all|remaining|rest"
)
SKIP_MODS = {"other", "more", "further", "additional", "extra", "else"}
COUNT_TOKEN = r"\d+|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r"|a\s+single|single|both|no"
AFTER_COUNT_CELLS_RE = re.compile(
    rf"""(?:[,\s]+(?!(?:and|or|but|while|whereas|with|than|of|both|each|all|some|{"|".join(NUMBER_WORDS)})\b)[^\W\d_]+){{0,3}}?[,\s]+
    (?:in|within|inside|across|over|among)\s+(?:the\s+)?(?:grid\s+)?(?=cells?\b|[^\W\d_]+[\s-]+[^\W\d_]+)""",
    re.X | re.I,
)
BOX_RE = re.compile(
    r"\[\s*(?P<x1>-?\d+(?:\.\d+)?)\s*,\s*(?P<y1>-?\d+(?:\.\d+)?)\s*,\s*(?P<x2>-?\d+(?:\.\d+)?)\s*,\s*(?P<y2>-?\d+(?:\.\d+)?)\s*\]"
)
COUNT_ANSWER_RE = re.compile(r"^(?:0|[1-9]\d*)$")
LOC_ANSWER_RE = re.compile(r"^(?:None|[1-9](?:,[1-9])*)$")
LABEL_ANSWER_RE = re.compile(r"^[^\W\d_][\w\s/-]{0,60}$")
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
