"""The training engine: configuration, loop, optimizers, checkpoints and callbacks."""
