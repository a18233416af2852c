"""The checks of text/consistency.py, one job per module: patterns (the regexes), context (one fact
sheet, computed once, and text helpers), numbers (percentages, measures, sizes, counts), cells (grid
cells and positions, negations), acquisition (dates, names, sensor, claims, hedges) and answers (task QA)."""
