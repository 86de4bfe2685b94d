"""Latency benchmarks: the exported step against PyTorch eager, the memory floor and a KV-cache Transformer."""
