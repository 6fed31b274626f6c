"""Solving: instance -> candidates -> MIP -> backend -> design -> independent verification."""
