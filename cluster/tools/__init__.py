"""Driver-side tools: the run report, run status, model/venv preparation."""
