"""dcopt's optimizer: candidate pruning, the MIP, backends, verification and reports."""

# The Python API is `optimizer.api` (`from optimizer import api as dc; dc.solve(dc.load("x.yaml"))`).
# Only the names that are not also submodules are re-exported here: `solve`, `sweep` and `pareto`
# are modules of this package, and a function bound over one would be replaced by the module as
# soon as it is imported (and would break `import optimizer.solving.pipeline as m`). `batch` and `generate`
# (now modules of `optimizer.runs`) stay API-only so that `import optimizer` keeps its names.
from optimizer.api import Estimate, InstanceError, Result, batch_workloads, estimate, load, read_batch, show, with_  # noqa: F401
