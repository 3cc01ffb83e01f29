"""What changes a student's weights with synthetic data: distillation, fine-tuning loaders, BatchNorm re-estimation."""
