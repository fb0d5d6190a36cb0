"""GPU health alerts per pool (joined on the scheduler's pool membership by uuid), and
the collection pipeline's own: targets down, a stale GPU exporter."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from alerts.prometheus_config import JOBS
from alerts.promql import dur, num, sel
from alerts.rules.case import Builder, Text, Value, eval_seconds
from alerts.rules.common import (
    CRITICAL,
    PLATFORM_TEAM,
    WARNING,
    Fixture,
    dashboard_url,
    is_top_priority,
    series,
    stale_seconds,
    sustain_seconds,
)
from deploy.stack import Pool
from exporters.catalog.gpu import (
    EXPORTER_LAST_COLLECT,
    GPU_ECC_ERRORS,
    GPU_TEMPERATURE,
    GPU_THROTTLE,
    GPU_UP,
    GPU_XID_LAST_SEEN,
)
from exporters.catalog.scheduler import GPU_POOL_INFO

GPU_FILE = "gpu.rules.yml"

GPU_TEMPERATURE_CELSIUS = 85.0  # H100 slowdown starts around 87 C; warn before it
# NVML clock-event reasons (names as exporters.gpu writes them) that are not a fault:
# idle, clocks set on purpose, and the power cap every GPU hits at full load.
BENIGN_THROTTLE_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "sync_boost",
    "display_clock_setting",
    "sw_power_cap",
)

GpuFixture = Callable[[Mapping[str, str]], Fixture]

# Two GPUs for the per-pool fixtures: the one under test and one in another pool.
_GPU_A = {"node": "gpu-node-1", "gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-00000000000a"}
_ECC = {"type": "uncorrected", "counter": "volatile"}
_HOT = {"reason": "hw_thermal_slowdown"}
_GPU_B = {"node": "gpu-node-2", "gpu": "1", "uuid": "GPU-00000000-0000-0000-0000-00000000000b"}


def generate(b: Builder) -> None:
    stack = b.stack
    group = "novabrain-gpu"
    sustain = sustain_seconds(stack)
    step = stack.prometheus.scrape_interval_seconds

    def info(g: Mapping[str, str], pool: str) -> tuple[str, str]:
        return (
            series(GPU_POOL_INFO.series, {"uuid": g["uuid"], "node": g["node"], "pool": pool}),
            "1x{n}",
        )

    for pool in stack.pools:
        join = f"on(uuid) group_left(pool) {sel(GPU_POOL_INFO.series, pool=pool.name)}"
        severe = CRITICAL if is_top_priority(stack, pool) else WARNING
        other = pool.name + "-other"

        def add(
            name: str,
            core: str,
            signal: str,
            for_seconds: float,
            severity: str,
            text: Text,
            value: Value,
            fired: float,
            panel: str,
            fire: GpuFixture,
            calm: GpuFixture,
            out_extra: Mapping[str, str],
            *,
            _pool: Pool = pool,
            _join: str = join,
            _other: str = other,
        ) -> None:
            b.alert(
                file=GPU_FILE,
                group=group,
                name=name,
                expr=f"({core}) * {_join}",
                signal=signal,
                for_seconds=for_seconds,
                severity=severity,
                labels={"pool": _pool.name, "team": _pool.team},
                text=text,
                value=value,
                fired=fired,
                dashboard=dashboard_url(stack, panel, pool=_pool.name, node="{{ $labels.node }}"),
                firing=(info(_GPU_A, _pool.name), *fire(_GPU_A)),
                # Quiet: this pool's GPU is healthy, and the condition on a GPU of
                # another pool must not be picked up by this pool's rule.
                quiet=(
                    info(_GPU_A, _pool.name),
                    *calm(_GPU_A),
                    info(_GPU_B, _other),
                    *fire(_GPU_B),
                ),
                out=({**_GPU_A, "pool": _pool.name, **out_extra},),
                title=_pool.name,
            )

        recent = sustain
        add(
            "NovabrainGpuXidError",
            f"time() - {GPU_XID_LAST_SEEN.series} < {num(recent)}",
            f"time() - {GPU_XID_LAST_SEEN.series}",
            0,
            severe,
            Text(
                "New XID error on a GPU",
                "GPU 出现新的 XID 错误",
                "XID {{ $labels.xid }} on {{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}).",
                "{{ $labels.node }} 的 GPU {{ $labels.gpu }}（{{ $labels.uuid }}）出现 XID {{ $labels.xid }}。",
            ),
            Value("text", prefix="XID {{ $labels.xid }}"),
            0,
            "xid",
            # Last seen at the latest scrape (a new XID) vs. at time zero (old news).
            lambda g: (
                (series(GPU_XID_LAST_SEEN.series, {**g, "xid": "79"}), f"0+{num(step)}x{{n}}"),
            ),
            lambda g: ((series(GPU_XID_LAST_SEEN.series, {**g, "xid": "79"}), "0x{n}"),),
            {"xid": "79"},
        )
        uncorrected = sel(GPU_ECC_ERRORS.series, type="uncorrected", counter="volatile")
        add(
            "NovabrainGpuEccUncorrected",
            f"increase({uncorrected}[{dur(recent)}]) > 0",
            f"increase({uncorrected}[{dur(recent)}])",
            0,
            CRITICAL,
            Text(
                "Uncorrected ECC errors on a GPU",
                "GPU 出现不可纠正的 ECC 错误",
                "{{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}) had uncorrected ECC "
                "errors: drain it and reset.",
                "{{ $labels.node }} 的 GPU {{ $labels.gpu }}（{{ $labels.uuid }}）出现不可纠正的 ECC "
                "错误：请排空该 GPU 并重置。",
            ),
            Value("number", suffix=f" / {dur(recent)}"),
            recent / step,  # one more error every scrape
            "ecc",
            lambda g: ((series(GPU_ECC_ERRORS.series, {**g, **_ECC}), "0+1x{n}"),),
            lambda g: (
                (series(GPU_ECC_ERRORS.series, {**g, **_ECC}), "3x{n}"),
                (series(GPU_ECC_ERRORS.series, {**g, **_ECC, "type": "corrected"}), "0+5x{n}"),
            ),
            _ECC,
        )
        add(
            "NovabrainGpuTemperatureHigh",
            f"{GPU_TEMPERATURE.series} > {num(GPU_TEMPERATURE_CELSIUS)}",
            GPU_TEMPERATURE.series,
            sustain,
            WARNING,
            Text(
                f"GPU above {num(GPU_TEMPERATURE_CELSIUS)} C",
                f"GPU 温度超过 {num(GPU_TEMPERATURE_CELSIUS)} °C",
                "{{ $labels.node }} GPU {{ $labels.gpu }} runs hot: check cooling before it throttles.",
                "{{ $labels.node }} 的 GPU {{ $labels.gpu }} 温度过高：请在降频前检查散热。",
            ),
            Value("number", suffix=" °C"),
            90,
            "temperature",
            lambda g: ((series(GPU_TEMPERATURE.series, g), "90x{n}"),),
            lambda g: ((series(GPU_TEMPERATURE.series, g), "70x{n}"),),
            {},
        )
        benign = sel(GPU_THROTTLE.series, {"reason": "!~" + "|".join(BENIGN_THROTTLE_REASONS)})
        add(
            "NovabrainGpuThrottled",
            f"{benign} == 1",
            benign,
            sustain,
            WARNING,
            Text(
                "GPU clocks throttled",
                "GPU 时钟降频",
                "{{ $labels.node }} GPU {{ $labels.gpu }} is throttled ({{ $labels.reason }}).",
                "{{ $labels.node }} 的 GPU {{ $labels.gpu }} 正在降频（{{ $labels.reason }}）。",
            ),
            Value("text", prefix="{{ $labels.reason }}"),
            1,
            "throttle",
            lambda g: ((series(GPU_THROTTLE.series, {**g, **_HOT}), "1x{n}"),),
            lambda g: (
                (series(GPU_THROTTLE.series, {**g, **_HOT}), "0x{n}"),
                (series(GPU_THROTTLE.series, {**g, "reason": "gpu_idle"}), "1x{n}"),
            ),
            _HOT,
        )
        add(
            "NovabrainGpuDown",
            f"{GPU_UP.series} == 0",
            GPU_UP.series,
            stale_seconds(stack),
            severe,
            Text(
                "NVML cannot read a GPU",
                "NVML 无法读取 GPU",
                "{{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}) does not answer NVML.",
                "{{ $labels.node }} 的 GPU {{ $labels.gpu }}（{{ $labels.uuid }}）对 NVML 无响应。",
            ),
            Value("number", prefix=f"{GPU_UP.series} = "),
            0,
            "gpu_up",
            lambda g: ((series(GPU_UP.series, g), "0x{n}"),),
            lambda g: ((series(GPU_UP.series, g), "1x{n}"),),
            {},
        )

    platform = {"team": PLATFORM_TEAM}
    jobs = "|".join(JOBS)
    target = {"job": JOBS[0], "instance": "127.0.0.1:9471"}
    up = sel("up", {"job": "=~" + jobs})
    b.alert(
        file=GPU_FILE,
        group=group,
        name="NovabrainTargetDown",
        expr=f"{up} == 0",
        signal=up,
        for_seconds=stale_seconds(stack),
        severity=WARNING,
        labels=platform,
        text=Text(
            "A novabrain exporter cannot be scraped",
            "无法采集 novabrain 指标",
            "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
            "Prometheus 无法采集 {{ $labels.instance }} 上的 {{ $labels.job }}。",
        ),
        value=Value("number", prefix="up = "),
        fired=0,
        dashboard=dashboard_url(stack, "gpu_collection"),
        firing=((series("up", target), "0x{n}"),),
        quiet=((series("up", target), "1x{n}"),),
        out=(target,),
    )
    age = f"time() - {EXPORTER_LAST_COLLECT.series}"
    b.alert(
        file=GPU_FILE,
        group=group,
        name="NovabrainGpuExporterStale",
        expr=f"{age} > {num(stale_seconds(stack))}",
        signal=age,
        for_seconds=0,
        severity=WARNING,
        labels=platform,
        text=Text(
            "The GPU exporter has stopped collecting",
            "GPU 采集器已停止采集",
            "The GPU exporter's last completed collection is older than "
            f"{dur(stale_seconds(stack))}: its GPU metrics are stale.",
            f"GPU 采集器最近一次完成的采集已超过 {dur(stale_seconds(stack))}：其 GPU 指标已过期。",
        ),
        value=Value("duration"),
        fired=eval_seconds(stack, 0),  # collected at time zero, evaluated then
        dashboard=dashboard_url(stack, "gpu_exporter"),
        # Collected at time zero and never again vs. collected every minute.
        firing=((EXPORTER_LAST_COLLECT.series, "0x{n}"),),
        quiet=((EXPORTER_LAST_COLLECT.series, f"0+{num(step)}x{{n}}"),),
        out=({},),
    )
