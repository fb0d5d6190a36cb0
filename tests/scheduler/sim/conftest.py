"""Fixtures for the simulator's tests; helpers live in simkit (a unique module name)."""
