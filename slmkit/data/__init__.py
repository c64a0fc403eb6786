"""Data: canonical rows (prompt, completion, answer, meta), loaders, prompt formats, built-in task
generators and the ``data`` stage."""
