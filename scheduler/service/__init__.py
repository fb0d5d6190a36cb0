"""The scheduler's HTTP service: Alertmanager webhook, REST API with RBAC, /metrics, /healthz.

``scheduler.service.app.build_app`` and ``serve`` are the entry points; the
endpoint table (with each endpoint's permission) is ``routes.ROUTES``. Errors:
``scheduler.service.errors`` (``ServiceError`` and its subclasses).
"""
