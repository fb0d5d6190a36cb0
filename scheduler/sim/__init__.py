"""Simulation: the demo's seed workload and a trace-driven simulator."""
