"""Live sources: runs written by other tools (TensorBoard log folders, MLflow tracking stores), followed on the monitor."""
