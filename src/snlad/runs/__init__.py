"""What a training leaves on disk and how it is read back: the checkpoint format, the trained model (``model.pt``), the run directory, several runs side by side, a run's results, experiments."""
