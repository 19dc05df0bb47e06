"""Keras models with custom train steps: Stage I (inter) and Stage II (intra)."""
