"""Pictures: images, masks and anomaly maps as arrays and PNG bytes (render), Matplotlib figures (plots)."""
