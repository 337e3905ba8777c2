"""Scores: the anomaly map and image score (maps), the rules that turn scores into decisions (thresholds), the metrics that grade them against ground truth."""
