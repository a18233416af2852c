"""embeddings of the triplet builder."""
