"""The MIP: candidates as numbers, the formulation (one function per constraint family), pruning, backends."""
