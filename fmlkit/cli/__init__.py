"""The stage commands: thin click commands over the library's stage functions, one module per
group of verbs (`data`: synth, prepare, filter; `split`: split, pairs; `convert`: convert,
inspect; `train`: train, export, embed; `evaluate`), and `_common`, the one error funnel.

Commands import their stage lazily, so ``fmlkit --help`` loads neither numpy, Pillow nor torch.
Errors a user can cause (`FmlkitError`, `OSError`) become one ``Error: …`` line and exit 1;
options that do not fit together (`OptionError`, click's usage errors) exit 2.

The pipeline runs these same commands (`fmlkit.pipeline.stages`), so this package imports
nothing from `fmlkit.pipeline`; the ``fmlkit`` group that mounts them all, with the pipeline's
own commands (`fmlkit.pipeline.commands`: run, status, artifacts), is `fmlkit.main`.
"""
