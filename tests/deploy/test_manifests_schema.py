"""Every generated object validates against the target version's schema; each overlay builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from manifest_testkit import GENERATED, kustomize_build, mutated, validate

from deploy.manifests.kustomize import BASE, OVERLAYS, layout
from deploy.stack import Stack


@pytest.fixture(scope="module")
def builds() -> dict[str, list[dict[str, Any]]]:
    """What ``kubectl apply -k`` sends for the base and each committed overlay."""
    dirs = {BASE: GENERATED / BASE, **{o: GENERATED / "overlays" / o for o in OVERLAYS}}
    return {name: kustomize_build(d) for name, d in dirs.items()}


@pytest.mark.parametrize("name", [BASE, *OVERLAYS])
def test_every_object_validates_against_the_target_version(
    name: str, builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    objects = builds[name]
    assert objects
    for o in objects:
        try:
            validate(o, stack.kubernetes.version)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']}: {getattr(e, 'message', e)}")


def test_overlays_add_only_what_they_say(builds: dict[str, list[dict[str, Any]]]) -> None:
    def names(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in objs}

    base = names(builds[BASE])
    assert names(builds["demo"]) == base
    extra = names(builds["production"]) - base
    assert {k for k, _ in extra} == {
        "Role",
        "RoleBinding",
        "PriorityClass",
    }


def test_every_generated_object_validates_for_other_versions(stack: Stack) -> None:
    """The stack may name another minor version: the objects are valid from 1.27 to 1.33."""
    objects = [d for rel, d in layout(stack, "version: 1\n").items() if "kustomization" not in rel]
    for version in ("1.27", "1.33"):
        for o in objects:
            validate(o, version)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        # A misspelt field, a wrong type, an unknown enum value: each must be refused.
        ("StatefulSet", ["spec", "replica"], 1),
        ("DaemonSet", ["spec", "template", "spec", "hostPID"], "yes"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "prot"], "metrics"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "expr"], ["not", "a", "string"]),
        ("AlertmanagerConfig", ["spec", "route", "matchers", 0, "matchType"], "=="),
        ("AlertmanagerConfig", ["spec", "route", "routes", 1, "matchers", 0, "matchType"], "=="),
        ("AlertmanagerConfig", ["spec", "route", "routes", 1, "continu"], True),
        ("AlertmanagerConfig", ["spec", "receivers", 1, "webhookConfigs", 0, "maxAlert"], 0),
    ],
)
def test_the_validation_refuses_a_broken_object(
    kind: str, path: list[Any], value: Any, stack: Stack
) -> None:
    objects = [d for rel, d in layout(stack, "version: 1\n").items() if "kustomization" not in rel]
    obj = next(o for o in objects if o["kind"] == kind)
    validate(obj, stack.kubernetes.version)
    with pytest.raises(jsonschema.ValidationError):
        validate(mutated(obj, path, value), stack.kubernetes.version)


def test_kustomize_refuses_a_broken_overlay(tmp_path: Path) -> None:
    """The build step can fail: a patch on a path that is not there."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{GENERATED / BASE}]\n"
        "patches:\n"
        "- target: {kind: StatefulSet, name: novabrain-scheduler}\n"
        "  patch: '[{op: remove, path: /spec/nothing}]'\n"
    )
    with pytest.raises(AssertionError):
        kustomize_build(tmp_path)
