"""Video decoding, sample-video generation, cut detection and clip writing."""
