"""Frame interpolation (SVD paper, section 4.5): an image-to-video model finetuned to fill the frames between
two given ones (5-frame windows: first and last given, 3 predicted -> 4x frame rate)."""
