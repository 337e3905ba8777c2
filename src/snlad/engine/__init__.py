"""The loops: training, inference, evaluation, prediction, calibration, model selection; the state they read and
write (checkpoints, model.pt, the run directory) is :mod:`snlad.runs`."""
