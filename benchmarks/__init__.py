"""Performance benchmarks of isacbench (issue 8, part 4): `python -m benchmarks [--quick]`.

Modules: bench_env (batched ent-usr env), bench_evaluators (analytic vs nested quad, Monte Carlo
vectorized vs looped), bench_solvers (time to 99% of the best known objective), bench_mappo
(training frames/s and time shares). Each `run(scale)` returns a `common.Section`; `__main__`
writes RESULTS.md from them.
"""
