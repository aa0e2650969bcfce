"""Experiment trackers for training: TensorBoard, Weights & Biases and MLflow.

Each is a callback of `fmlkit.train.callbacks` (``on_log(step, metrics)``, ``close()``),
chosen by the config's ``log`` section. `tags` names what they all record: every metric under
one grouped tag (``train/loss``, ``val/<pairs>/accuracy``) and the config as flat
hyperparameters; `run_ids` keeps the W&B and MLflow run ids so that a resumed run continues
its own. ``wandb`` and ``mlflow`` are imported only when enabled.
"""
