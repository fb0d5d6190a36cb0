"""Grafana dashboards as code (grafanalib), generated from the stack file."""
