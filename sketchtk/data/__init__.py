"""Stroke data: formats, QuickDraw / sketch-rnn ingestion, augmentation, tf.data pipelines."""
