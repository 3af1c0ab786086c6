"""The scorer's kernels: reward kinds (programmatic, hf_classifier, embedding_similarity, http) and built-in rewards."""
