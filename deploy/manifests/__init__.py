"""Kubernetes manifests generated from the stack: a kustomize base and two overlays.

``novabrain generate`` writes them to ``deploy/generated/kubernetes/``:

* ``base/``: one file per object: the install namespace, the stack as a
  ConfigMap, the scheduler (StatefulSet with its state volume, Service,
  PodDisruptionBudget, NetworkPolicy, ServiceMonitor), the GPU exporter
  (DaemonSet on the GPU nodes, Service, NetworkPolicy, ServiceMonitor), the
  model servers' ServiceMonitor, the rules as PrometheusRules, the routes as an
  AlertmanagerConfig and the dashboards as Grafana sidecar ConfigMaps;
* ``overlays/production``: NVML and the Kubernetes actuator, with the RBAC it
  needs and the ``novabrain-balloon`` PriorityClass;
* ``overlays/demo``: simulated GPUs and the simulated actuator, no RBAC.

Modules: ``objects`` (labels, metadata, shared object shapes, YAML),
``scheduler``, ``exporter``, ``rbac``, ``monitoring`` (ServiceMonitors, rules,
dashboards), ``alertmanager`` (the routes), ``kustomize`` (the layout and
``write_all``); ``errors`` has the one exception, ``ManifestError``. Everything here is a pure function of the stack; the tests
validate every object against the target Kubernetes version's OpenAPI schema
and the Prometheus Operator's CRD schemas, and prove the RBAC rules equal the
API calls the actuator makes.
"""
