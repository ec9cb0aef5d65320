"""Every MLflow call: runs, their tags and the store rule (runs), the model registry and aliases (registry)."""
