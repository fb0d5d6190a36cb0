"""The kubelet pod-resources API (v1): which pods and containers hold which GPUs.

``List`` on the kubelet's local gRPC socket answers every pod's containers and
the device ids allocated to them; for the NVIDIA device plugin those ids are
GPU (or MIG) uuids, which is how a GPU process's pod, namespace and container
are named. The messages are decoded here from the protobuf wire format (five
fields of four message types), so the exporter needs grpcio but no generated
code. grpcio is imported when a client is made: without it, or without the
socket, attribution falls back to /proc (exporters.gpu.attribution).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from exporters.gpu.attribution import PodRef
from exporters.gpu.errors import PodResourcesError

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
LIST_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCES = ("nvidia.com/gpu",)  # plus the MIG resources, "nvidia.com/mig-<profile>"

# Field numbers of k8s.io/kubelet/pkg/apis/podresources/v1/api.proto.
_RESPONSE_POD = 1  # ListPodResourcesResponse.pod_resources
_POD_NAME, _POD_NAMESPACE, _POD_CONTAINERS = 1, 2, 3  # PodResources
_CONTAINER_NAME, _CONTAINER_DEVICES = 1, 2  # ContainerResources
_DEVICE_RESOURCE, _DEVICE_IDS = 1, 2  # ContainerDevices


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise PodResourcesError("truncated varint in pod-resources response")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | int]]:
    """(field number, value) of one message; length-delimited values as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, value
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise PodResourcesError("truncated field in pod-resources response")
            yield number, buf[i : i + n]
            i += n
        elif wire in (1, 5):  # fixed 64/32 bit: no field we read uses them; skip
            i += 8 if wire == 1 else 4
        else:
            raise PodResourcesError(f"unsupported protobuf wire type {wire}")


def _text(v: bytes | int) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _is_gpu(resource: str) -> bool:
    return resource in GPU_RESOURCES or resource.startswith("nvidia.com/mig-")


def parse_list_response(buf: bytes) -> dict[str, list[PodRef]]:
    """GPU uuid -> the containers it is allocated to, from a serialised ListPodResourcesResponse."""
    out: dict[str, list[PodRef]] = {}
    for number, pod in _fields(buf):
        if number != _RESPONSE_POD or not isinstance(pod, bytes):
            continue
        name = namespace = ""
        containers: list[bytes] = []
        for f, v in _fields(pod):
            if f == _POD_NAME:
                name = _text(v)
            elif f == _POD_NAMESPACE:
                namespace = _text(v)
            elif f == _POD_CONTAINERS and isinstance(v, bytes):
                containers.append(v)
        for c in containers:
            cname = ""
            devices: list[bytes] = []
            for f, v in _fields(c):
                if f == _CONTAINER_NAME:
                    cname = _text(v)
                elif f == _CONTAINER_DEVICES and isinstance(v, bytes):
                    devices.append(v)
            for d in devices:
                resource = ""
                ids: list[str] = []
                for f, v in _fields(d):
                    if f == _DEVICE_RESOURCE:
                        resource = _text(v)
                    elif f == _DEVICE_IDS:
                        ids.append(_text(v))
                if _is_gpu(resource):
                    for uuid in ids:
                        out.setdefault(uuid, []).append(PodRef(namespace, name, cname))
    return out


class KubeletPodResources:
    """A ``PodResourcesSource`` over the kubelet's unix socket."""

    def __init__(self, socket: Path = DEFAULT_SOCKET, *, timeout: float = 2.0) -> None:
        try:
            self._grpc: Any = importlib.import_module("grpc")
        except ImportError as e:
            raise PodResourcesError("grpcio is not installed") from e
        self.socket = socket
        self.timeout = timeout
        self._channel = self._grpc.insecure_channel(f"unix://{socket}")
        self._list = self._channel.unary_unary(
            LIST_METHOD,
            request_serializer=lambda _: b"",  # ListPodResourcesRequest has no fields
            response_deserializer=parse_list_response,
        )

    def gpu_pods(self) -> Mapping[str, Sequence[PodRef]]:
        try:
            result: dict[str, list[PodRef]] = self._list(None, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise PodResourcesError(f"kubelet pod-resources at {self.socket}: {e.code()}") from e
        return result

    def close(self) -> None:
        self._channel.close()
