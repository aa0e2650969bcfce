"""Evaluation: embedding datasets with a trained model; verification and retrieval metrics."""
