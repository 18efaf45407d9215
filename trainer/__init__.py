"""Training, evaluation and headless prediction for the building-footprint U-Net."""
