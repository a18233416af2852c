"""stages of the triplet builder."""
