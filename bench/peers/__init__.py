"""Peers the engine is measured against: what a Python team would build instead (see bench_peers.py)."""
