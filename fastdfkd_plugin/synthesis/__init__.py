"""Synthesis machinery shared by the sources: generator, augmentation, inversion loss, meta-learning."""
