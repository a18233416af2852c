"""facts of the triplet builder."""
