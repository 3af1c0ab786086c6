"""The scorer's kernels: reward kinds (programmatic, hf_classifier, embedding_similarity) and built-in rewards."""
