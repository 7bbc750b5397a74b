"""Built-in isacbench tasks (installed as `isacbench.tasks`)."""
