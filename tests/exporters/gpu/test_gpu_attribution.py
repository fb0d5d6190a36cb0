"""pid -> pod/container from /proc/<pid>/cgroup, and pod names from the kubelet where reachable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from gpu_testlib import STACK_FILE, scrape
from prometheus_client import CollectorRegistry

from deploy.stack import load_stack
from exporters.catalog import gpu as cat
from exporters.gpu.attribution import (
    Attribution,
    Attributor,
    CgroupRef,
    PodRef,
    parse_cgroup,
)
from exporters.gpu.exporter import GpuExporter
from exporters.nvml.sim import SimBackend

GIB = 1024**3
UID = "0b5a6b8e-8d5c-4f0e-9c8a-1234567890ab"
CID = "4f1c2d3e" * 8


@pytest.mark.parametrize(
    "text",
    [
        # cgroup v1, cgroupfs driver (several hierarchies; any line with the pod will do)
        f"12:pids:/kubepods/burstable/pod{UID}/{CID}\n11:memory:/kubepods/burstable/pod{UID}/{CID}\n",
        # cgroup v2, systemd driver, containerd
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}"
        f".slice/cri-containerd-{CID}.scope\n",
        # cgroup v2, systemd driver, guaranteed QoS, CRI-O
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
        # docker shim
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"{UID.replace('-', '_')}.slice/docker-{CID}.scope\n",
    ],
)
def test_pod_and_container_from_every_cgroup_layout(text: str) -> None:
    assert parse_cgroup(text) == CgroupRef(UID, CID)


def test_process_in_the_pod_cgroup_itself_has_no_container() -> None:
    assert parse_cgroup(f"0::/kubepods/pod{UID}\n") == CgroupRef(UID, "")


def test_processes_outside_kubernetes_have_no_pod() -> None:
    assert parse_cgroup("0::/user.slice/user-1000.slice/session-4.scope\n") is None
    assert parse_cgroup("") is None


class Kubelet:
    def __init__(self, pods: Mapping[str, Sequence[PodRef]] | None) -> None:
        self.pods = pods

    def gpu_pods(self) -> Mapping[str, Sequence[PodRef]]:
        if self.pods is None:
            raise FileNotFoundError("/var/lib/kubelet/pod-resources/kubelet.sock")
        return self.pods


def files(tmp_path: Path, cgroups: Mapping[int, str]) -> Path:
    for pid, text in cgroups.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    return tmp_path


def test_kubelet_names_the_pod_of_a_dedicated_gpu(tmp_path: Path) -> None:
    proc = files(tmp_path, {10: f"0::/kubepods/pod{UID}/{CID}\n"})
    kubelet = Kubelet({"GPU-a": [PodRef("risk", "scorer-7d9", "triton")]})
    got = Attributor(proc_root=proc, pod_resources=kubelet).resolve({"GPU-a": [10]})
    assert got == {("GPU-a", 10): Attribution("risk", "scorer-7d9", "triton")}


def test_shared_gpu_or_no_kubelet_falls_back_to_the_cgroup(tmp_path: Path) -> None:
    proc = files(tmp_path, {10: f"0::/kubepods/pod{UID}/{CID}\n", 11: "0::/init.scope\n"})
    shared = Kubelet({"GPU-a": [PodRef("a", "p1", "c"), PodRef("b", "p2", "c")]})
    for source in (shared, Kubelet(None), None):
        got = Attributor(proc_root=proc, pod_resources=source).resolve({"GPU-a": [10, 11, 12]})
        assert got == {
            ("GPU-a", 10): Attribution("", UID, CID[:12]),
            ("GPU-a", 11): Attribution(),  # not in a pod
            ("GPU-a", 12): Attribution(),  # no /proc entry visible
        }


def test_cgroups_are_read_once_per_pid_and_forgotten_when_it_exits(tmp_path: Path) -> None:
    proc = files(tmp_path, {10: f"0::/kubepods/pod{UID}/{CID}\n", 11: f"0::/kubepods/pod{UID}\n"})
    reads: list[Path] = []

    def read(p: Path) -> str:
        reads.append(p)
        return p.read_text()

    a = Attributor(proc_root=proc, read=read)
    a.resolve({"GPU-a": [10, 11]})
    a.resolve({"GPU-a": [10, 11]})
    assert len(reads) == 2
    a.resolve({"GPU-a": [11]})
    a.resolve({"GPU-a": [10, 11]})  # pid 10 came back (reused): read afresh
    assert [p.parent.name for p in reads] == ["10", "11", "10"]


def test_host_process_on_a_dedicated_gpu_is_not_the_pods(tmp_path: Path) -> None:
    proc = files(tmp_path, {20: "0::/system.slice/nv-hostengine.service\n"})
    kubelet = Kubelet({"GPU-a": [PodRef("risk", "scorer-7d9", "triton")]})
    got = Attributor(proc_root=proc, pod_resources=kubelet).resolve({"GPU-a": [20, 21]})
    assert got == {
        ("GPU-a", 20): Attribution(),  # a host daemon: in no pod
        ("GPU-a", 21): Attribution("risk", "scorer-7d9", "triton"),  # /proc hides it: the holder
    }


def test_the_exporters_process_series_carry_the_attribution(tmp_path: Path) -> None:
    """Each label of the per-process series holds its own value: the kubelet's namespace, pod
    and container for a dedicated GPU, the cgroup's pod uid and short container id otherwise,
    and the scheduler's job."""
    stack = load_stack(STACK_FILE)
    sim = SimBackend.from_stack(stack)
    dedicated, unlisted = sim.gpus[0].uuid, sim.gpus[1].uuid
    sim.set_processes(dedicated, [(10, 1 * GIB)])
    sim.set_processes(unlisted, [(11, 3 * GIB)])
    proc = files(
        tmp_path, {10: f"0::/kubepods/pod{UID}/{CID}\n", 11: f"0::/kubepods/pod{UID}/{CID}\n"}
    )
    kubelet = Kubelet({dedicated: [PodRef("risk", "scorer-7d9", "triton")]})
    registry = CollectorRegistry()
    GpuExporter(
        sim,
        registry,
        attributor=Attributor(proc_root=proc, pod_resources=kubelet),
        job_resolver={10: "p0-risk-replica-0"}.get,
    ).collect_once()
    got = {
        (lab["uuid"], lab["pid"]): (lab["namespace"], lab["pod"], lab["container"], lab["job"], v)
        for lab, v in scrape(registry)[cat.GPU_PROCESS_MEMORY.series]
    }
    assert got == {
        (dedicated, "10"): ("risk", "scorer-7d9", "triton", "p0-risk-replica-0", 1.0 * GIB),
        (unlisted, "11"): ("", UID, CID[:12], "", 3.0 * GIB),
    }
