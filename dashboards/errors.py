"""The dashboards package's one exception tree.

``DashboardsError`` is the base. Deploying maps Grafana's HTTP answers to the
subclasses so the CLI can print one clear line and exit non-zero.
"""

from __future__ import annotations


class DashboardsError(Exception):
    """A dashboard could not be built or deployed."""


class GrafanaError(DashboardsError):
    """Grafana answered with an error, or could not be reached."""


class GrafanaUnreachable(GrafanaError):
    """Connection refused, DNS failure or timeout: no Grafana answered at the URL."""


class GrafanaUnauthorized(GrafanaError):
    """HTTP 401: the token is missing, wrong or expired."""


class GrafanaForbidden(GrafanaError):
    """HTTP 403: the token is valid but may not write dashboards or folders."""


class GrafanaConflict(GrafanaError):
    """HTTP 412: another dashboard has the same uid or title, or the version changed meanwhile."""


class MissingToken(DashboardsError):
    """Neither ``GRAFANA_TOKEN`` nor the stack's token file gives a token."""
