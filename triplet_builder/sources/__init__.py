"""sources of the triplet builder."""
