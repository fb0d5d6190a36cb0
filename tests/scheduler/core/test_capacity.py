"""The queueing model that turns a model's load into GPUs (``scheduler/core/capacity.py``).

Its numbers are checked against the model-server simulator's documented points and
against a discrete-event simulation of the same M/G/c queue run here.
"""

from __future__ import annotations

import heapq
import math
import random

import pytest

from scheduler.core.capacity import ServingSpec, erlang_c, gpus_needed, latency_quantile

RISK_SCORER = ServingSpec(service_time_seconds=0.008, gpus_per_replica=4, replica_concurrency=1)


def simulated_quantile(rate: float, gpus: int, serving: ServingSpec, q: float) -> float:
    """The same queue, simulated: Poisson arrivals, FIFO over the slots, gamma service."""
    rng = random.Random(7)
    free = [0.0] * serving.slots(gpus)
    t = 0.0
    latencies = []
    shape = serving.service_time_shape
    for _ in range(60_000):
        t += rng.expovariate(rate)
        service = rng.gammavariate(shape, serving.service_time_seconds / shape)
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service)
        latencies.append(start + service - t)
    latencies.sort()
    return latencies[int(q * len(latencies))]


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: the chance of waiting is rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(2, 2.0) == 1.0  # unstable: everyone waits
    assert erlang_c(4, 0.0) == 0.0


def test_the_model_servers_documented_points() -> None:
    # exporters/modelserver/sim.py: 2 slots (8 GPUs) serve 250 req/s; at 125 req/s the
    # p99 is 22 ms by queueing theory; at 350 req/s the queue grows without bound; with
    # 16 GPUs (4 slots, utilisation 0.7) it is back near its 125 req/s value.
    assert RISK_SCORER.capacity_rps(8) == pytest.approx(250.0)
    assert latency_quantile(125, 8, RISK_SCORER, 0.99) == pytest.approx(0.022, rel=0.1)
    assert latency_quantile(350, 8, RISK_SCORER, 0.99) == math.inf
    assert latency_quantile(350, 16, RISK_SCORER, 0.99) < 0.03


@pytest.mark.parametrize(
    ("rate", "gpus", "serving"),
    [
        (125, 8, RISK_SCORER),
        (200, 8, RISK_SCORER),
        (60, 4, RISK_SCORER),
        (900, 32, RISK_SCORER),
        (40, 3, ServingSpec(0.05, 1, 2, service_time_shape=2.0)),
    ],
)
def test_agrees_with_a_simulation_of_the_same_queue(
    rate: float, gpus: int, serving: ServingSpec
) -> None:
    predicted = latency_quantile(rate, gpus, serving, 0.99)
    simulated = simulated_quantile(rate, gpus, serving, 0.99)
    # 60k simulated requests leave a few percent of noise in a p99 near saturation.
    assert simulated * 0.9 <= predicted <= simulated * 1.15


def test_gpus_needed_is_the_fewest_whole_replicas_within_the_threshold_and_margin() -> None:
    slo = {"threshold_seconds": 0.05, "quantile": 0.99, "margin": 0.2}
    for rate in (0.0, 10.0, 60.0, 100.0, 250.0, 350.0, 1000.0):
        n = gpus_needed(rate, RISK_SCORER, **slo)
        assert n is not None and n % RISK_SCORER.gpus_per_replica == 0
        assert latency_quantile(rate, n, RISK_SCORER, 0.99) <= 0.8 * 0.05
        if n > RISK_SCORER.gpus_per_replica:
            fewer = n - RISK_SCORER.gpus_per_replica
            assert latency_quantile(rate, fewer, RISK_SCORER, 0.99) > 0.8 * 0.05
    # More load never needs fewer GPUs; a larger margin never needs fewer either.
    needs = [gpus_needed(r, RISK_SCORER, **slo) or 0 for r in range(0, 2000, 50)]
    assert needs == sorted(needs)
    assert (gpus_needed(350, RISK_SCORER, threshold_seconds=0.05, quantile=0.99) or 0) <= (
        gpus_needed(350, RISK_SCORER, **slo) or 0
    )


def test_a_service_slower_than_the_threshold_cannot_be_served() -> None:
    slow = ServingSpec(service_time_seconds=0.2)
    assert gpus_needed(10, slow, threshold_seconds=0.05, quantile=0.99) is None
