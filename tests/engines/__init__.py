"""Real database engines started from the project's own dependencies, for the storage tests."""
