"""Input and output: image decoding with its guards, atomic writes, checks of output paths."""
