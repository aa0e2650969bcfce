"""The torch side of the data, for `fmlkit.train` and `fmlkit.eval` only: datasets over
dataset_info folders and Parquet (`datasets`, with `parquet_rows` and `arrow_cache`), resumable
and m-per-class samplers sharded over ranks (`samplers`), image transforms (`transforms`) and
batched decoding on the training device (`gpu_decode`). Importing this package imports no
torch; its modules do.
"""
