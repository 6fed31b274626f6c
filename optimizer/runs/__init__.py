"""Runs: many instances solved as one batch (discovery, result store, local and Ray engines), sweep
files expanded into scenario files, and the random instance generator.

Runs sit above the solving pipeline and below presentation, the API and the CLI: nothing here
imports those."""
