"""Alerting rules and Alertmanager/Prometheus configuration, generated from the stack file."""
