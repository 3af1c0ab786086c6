"""Prompt sets: loading prompt files, the built-in synthetic task, the built-in instruction prompts."""
