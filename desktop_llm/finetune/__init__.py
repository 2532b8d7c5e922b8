"""Fine-tuning: run configs and folders (app side), the training process, exports."""
