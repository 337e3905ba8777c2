"""Loops and their state: training, the trained model and its run directory, inference, evaluation, prediction, calibration."""
