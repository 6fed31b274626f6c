"""dcopt's optimizer: candidate pruning, the MIP, backends, verification and reports."""
