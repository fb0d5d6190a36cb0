"""Who owns a GPU process: pid -> pod uid / container from /proc, pod names from the kubelet.

``/proc/<pid>/cgroup`` names the pod uid and the container id under every
kubelet cgroup layout (cgroup v1 and v2, cgroupfs and systemd drivers). The
kubelet pod-resources API maps a GPU uuid to the pods and containers it is
allocated to; where it is reachable (``PodResourcesSource``), namespace, pod
and container names come from it. Where it is not, the labels still say which
pod (by uid) and container (by id) the process belongs to, instead of the empty
pod labels dcgm-exporter users complain about.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exporters.gpu.errors import PodResourcesError

log = logging.getLogger(__name__)

# Pod uid as the kubelet writes it in cgroup paths: with dashes (cgroupfs) or
# with underscores (systemd driver, where dashes separate slice names).
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
# Container id: the last 64-hex path element, optionally "docker-"/"cri-containerd-"/"crio-"
# prefixed and ".scope" suffixed.
_CONTAINER = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True)
class CgroupRef:
    pod_uid: str
    container_id: str  # "" when the process sits in the pod's cgroup itself


@dataclass(frozen=True)
class PodRef:
    namespace: str
    pod: str
    container: str


@dataclass(frozen=True)
class Attribution:
    namespace: str = ""
    pod: str = ""
    container: str = ""


def parse_cgroup(text: str) -> CgroupRef | None:
    """The pod and container of a ``/proc/<pid>/cgroup`` file, or None outside Kubernetes."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        m = _POD.search(path)
        if m is None:
            continue
        uid = m.group(1).replace("_", "-")
        c = _CONTAINER.search(path)
        return CgroupRef(uid, c.group(1) if c else "")
    return None


class PodResourcesSource(Protocol):
    def gpu_pods(self) -> Mapping[str, Sequence[PodRef]]:
        """GPU uuid -> the pods/containers the kubelet allocated it to."""


class Attributor:
    """Resolves pids to pods; caches per pid and forgets pids that are gone."""

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        pod_resources: PodResourcesSource | None = None,
        read: Callable[[Path], str] | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.pod_resources = pod_resources
        self._read = read or (lambda p: p.read_text())
        self._cgroups: dict[int, CgroupRef | None] = {}
        self._unreadable: set[int] = set()
        self._kubelet_failed = False

    def cgroup(self, pid: int) -> CgroupRef | None:
        """The pid's pod cgroup; None outside a pod or when /proc does not show the pid."""
        if pid not in self._cgroups:
            try:
                self._cgroups[pid] = parse_cgroup(self._read(self.proc_root / str(pid) / "cgroup"))
            except OSError:
                # Not visible from here: the exporter runs without the host's pid
                # namespace, or the process has just exited.
                self._cgroups[pid] = None
                self._unreadable.add(pid)
        return self._cgroups[pid]

    def resolve(
        self, pids_by_gpu: Mapping[str, Sequence[int]]
    ) -> dict[tuple[str, int], Attribution]:
        """Attribution for every (gpu uuid, pid) seen in one slow cycle; forgets other pids."""
        alive = {pid for pids in pids_by_gpu.values() for pid in pids}
        for gone in self._cgroups.keys() - alive:
            del self._cgroups[gone]
            self._unreadable.discard(gone)
        pods: Mapping[str, Sequence[PodRef]] = {}
        if self.pod_resources is not None:
            try:
                pods = self.pod_resources.gpu_pods()
            except (OSError, PodResourcesError) as e:
                # Kubelet socket absent or restarting: fall back to /proc alone.
                if not self._kubelet_failed:
                    log.warning("pod attribution from /proc only: %s", e)
                self._kubelet_failed = True
                pods = {}
            else:
                self._kubelet_failed = False
        out: dict[tuple[str, int], Attribution] = {}
        for uuid, pids in pids_by_gpu.items():
            holders = pods.get(uuid, ())
            for pid in pids:
                out[(uuid, pid)] = self._attribute(pid, holders)
        return out

    def _attribute(self, pid: int, holders: Sequence[PodRef]) -> Attribution:
        cg = self.cgroup(pid)
        known_host_process = cg is None and pid not in self._unreadable
        if len(holders) == 1 and not known_host_process:
            # The GPU is the container's alone. (A host daemon on it, such as a
            # profiler, is in no pod cgroup and is not attributed to the pod.)
            h = holders[0]
            return Attribution(h.namespace, h.pod, h.container)
        if cg is None:
            return Attribution()
        # Shared GPU (time-slicing) or no kubelet API: name the pod by uid and the
        # container by its short id, which is what `crictl ps` shows.
        return Attribution("", cg.pod_uid, cg.container_id[:12])
