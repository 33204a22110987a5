"""Multi-view fine-tune (SVD-MV): orbit data, elevation conditioning, training task, evaluation."""
