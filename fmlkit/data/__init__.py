"""Data stages: scanning, hashing, dedup, splits, RecordIO, conversion, datasets, synthesis."""
