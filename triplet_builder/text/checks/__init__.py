"""The checks of text/consistency.py, one job per module: patterns (the regexes), context (one fact
sheet, computed once, and text helpers), numbers (percentages, measures, sizes, counts), cells (grid
cells and positions, negations), acquisition (dates, names, sensor, boundary claims, hedges), vocab (the
vocabulary names and their negations), land_cover (ext.land_cover), osm (ext.osm), names (functions,
object classes / OSM features, ungrounded terms) and answers (task QA)."""
