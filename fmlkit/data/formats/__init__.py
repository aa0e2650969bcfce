"""Bytes on disk <-> Python, with no stage policy: the ground floor every stage stands on.

`recordio` (MXNet .rec/.idx: the layout and the writer; `recordio_reader` reads by key,
`recordio_flavour` tells InsightFace's layouts apart), `parquet` (fmlkit's sharded image Parquet
and its manifest), `table` (dataset_info tables, CSV or Parquet; `table_read` parses them
strictly), `insightface_bin` (InsightFace's validation ``.bin``), `hashing` (perceptual
hashes), `pair_lists` (the ``1,a,b`` CSV and LFW pairs.txt), `ijb` (IJB-B/IJB-C meta files,
read by `spaced_text`) and `images` (decoding and peeking at encoded images). The byte layouts
are in docs/formats.md.

Nothing here imports a stage package (`fmlkit.data.prepare`, `…filter`, …) or torch.
"""
