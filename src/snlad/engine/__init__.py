"""Training, evaluation and prediction loops, checkpoints and run directories."""
