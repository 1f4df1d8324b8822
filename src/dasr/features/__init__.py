"""Descriptions: the methods, ExtractorSpec, the per-image Extractor, pooling and global
descriptors, PCA-whitening, VLAD."""
