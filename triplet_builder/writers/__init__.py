"""writers of the triplet builder."""
