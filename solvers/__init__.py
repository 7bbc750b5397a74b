"""Built-in isacbench solvers (installed as `isacbench.solvers`)."""
