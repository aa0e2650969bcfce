"""Datasets on disk and the stages that make them: one package per command, formats below.

::

    formats/   bytes on disk <-> Python, no stage policy: recordio, parquet, table (dataset_info),
               insightface_bin, hashing, pair_lists (CSV / LFW pairs.txt), images
    synth/     fmlkit synth      faces, draw, synth: an identity dataset with planted defects
    prepare/   fmlkit prepare    walk, probe, scan: class folders → dataset_info
    filter/    fmlkit filter     filter, dedup, hamming, report
    split/     fmlkit split      folds; fmlkit pairs: pairs over draw
    convert/   fmlkit convert    dispatch, from_rec (rec_scan), from_images, from_parquet,
                                 shuffle, report; fmlkit inspect
    loading/   the torch side, for fmlkit.train and fmlkit.eval: datasets, samplers,
               transforms, gpu_decode, arrow_cache

The rules that keep this readable (tests/test_imports.py checks them):

- One package per CLI verb. Its ``__init__`` exports only the stage function(s) with their
  options and report types (``from fmlkit.data.split import split_dataset, SplitReport``);
  everything else is reached through its module.
- ``formats/`` imports no verb package. A verb package imports ``formats/`` and itself; it
  imports another verb package only in pipeline order (synth → prepare → filter → split →
  convert: ``convert`` may scan a folder with ``prepare``), never backwards.
- ``loading/`` is imported only by ``fmlkit.train`` and ``fmlkit.eval``.
- Nothing under ``fmlkit/data/`` imports ``fmlkit.models``, ``fmlkit.train``, ``fmlkit.eval``,
  ``fmlkit.cli`` or ``fmlkit.pipeline``.
- A new verb (``align``, ``clean``) gets its own package under the same rules.

docs/architecture.md shows the whole house and the data flow of one ``make demo`` through it.
"""
