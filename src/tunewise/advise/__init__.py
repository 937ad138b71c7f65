"""Before any compute: the readiness checklist, the model catalog, time and memory estimates."""
