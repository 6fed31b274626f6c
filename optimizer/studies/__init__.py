"""Studies over solves: infeasibility diagnosis and what binds, what-if sweeps, Pareto fronts."""
