"""text of the triplet builder."""
