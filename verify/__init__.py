"""Parity, proven: runners that step a policy (checkpoint, step module, graph on any backend) and the comparisons between them."""
