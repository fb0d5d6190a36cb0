"""The kubelet pod-resources client against a real gRPC server on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import pytest

from exporters.gpu.attribution import Attribution, Attributor, PodRef
from exporters.gpu.errors import PodResourcesError
from exporters.gpu.podresources import KubeletPodResources, parse_list_response


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def device(resource: str, *ids: str) -> bytes:
    return field(1, resource) + b"".join(field(2, i) for i in ids)


def container(name: str, *devices: bytes, cpus: tuple[int, ...] = ()) -> bytes:
    packed = b"".join(varint(c) for c in cpus)
    cpu_field = field(3, packed) if cpus else b""
    return field(1, name) + b"".join(field(2, d) for d in devices) + cpu_field


def pod(name: str, namespace: str, *containers: bytes) -> bytes:
    return field(1, name) + field(2, namespace) + b"".join(field(3, c) for c in containers)


RESPONSE = field(
    1,
    pod(
        "scorer-7d9",
        "risk",
        container("triton", device("nvidia.com/gpu", "GPU-a", "GPU-b"), cpus=(2, 3)),
        container("sidecar", device("example.com/nic", "eth1")),
    ),
) + field(
    1,
    pod("train-0", "ml", container("trainer", device("nvidia.com/mig-1g.10gb", "MIG-c"))),
)


def test_response_decoding() -> None:
    assert parse_list_response(RESPONSE) == {
        "GPU-a": [PodRef("risk", "scorer-7d9", "triton")],
        "GPU-b": [PodRef("risk", "scorer-7d9", "triton")],
        "MIG-c": [PodRef("ml", "train-0", "trainer")],
    }
    assert parse_list_response(b"") == {}
    with pytest.raises(PodResourcesError):
        parse_list_response(RESPONSE[:-3])


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Path]:
    # grpcio is what the client speaks to the kubelet with (pyproject: dev and kubernetes extras).
    grpc = pytest.importorskip("grpc")
    sock = tmp_path / "kubelet.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "v1.PodResourcesLister",
        {
            "List": grpc.unary_unary_rpc_method_handler(
                lambda request, context: RESPONSE,
                request_deserializer=lambda b: b,
                response_serializer=lambda b: b,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield sock
    finally:
        server.stop(grace=None)


def test_client_lists_gpu_pods_over_the_socket(kubelet: Path, tmp_path: Path) -> None:
    client = KubeletPodResources(kubelet)
    try:
        pods = client.gpu_pods()
        assert pods["GPU-a"] == [PodRef("risk", "scorer-7d9", "triton")]
        # No /proc entry for the pid here: the kubelet's word decides.
        got = Attributor(proc_root=tmp_path, pod_resources=client).resolve({"GPU-b": [1]})
        assert got == {("GPU-b", 1): Attribution("risk", "scorer-7d9", "triton")}
    finally:
        client.close()


def test_missing_socket_falls_back_to_proc(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    client = KubeletPodResources(tmp_path / "absent.sock", timeout=0.5)
    try:
        with pytest.raises(PodResourcesError):
            client.gpu_pods()
        got = Attributor(proc_root=tmp_path, pod_resources=client).resolve({"GPU-a": [7]})
        assert got == {("GPU-a", 7): Attribution()}
    finally:
        client.close()
