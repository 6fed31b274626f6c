"""dcopt's optimizer: the MIP, solving and verification, studies, runs, presentation, the API and the CLI.

The Python API is `optimizer.api` (`from optimizer import api as dc; dc.solve(dc.load("x.yaml"))`).
This package imports nothing on its own, so loading a low layer (say `optimizer.mip.lp`) does not
load the layers above it; `.importlinter` keeps the layers pointing down.
"""
