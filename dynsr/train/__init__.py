"""Training: configuration, data sets, losses and the training loop."""
