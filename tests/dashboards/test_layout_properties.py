"""Properties of the grid layout and the lint's geometry, over arbitrary panel sizes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.lint import lint_expr, overlaps
from dashboards.panels import GRID_WIDTH, layout, stat
from exporters.catalog.gpu import GPU_UP

sizes = st.lists(st.tuples(st.integers(1, GRID_WIDTH), st.integers(1, 12)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_layout_never_overlaps_and_stays_on_the_grid(dims: list[tuple[int, int]]) -> None:
    specs = [stat(f"p{i}", [(GPU_UP.series, "")], "none") for i in range(len(dims))]
    specs = [type(s)(s.panel, w, h) for s, (w, h) in zip(specs, dims, strict=True)]
    panels = layout(specs)
    boxes = [p.gridPos.to_json_data() for p in panels]
    assert [p.id for p in panels] == list(range(1, len(dims) + 1))
    for box in boxes:
        assert box["x"] >= 0 and box["x"] + box["w"] <= GRID_WIDTH
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not overlaps(a, b)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["rate", "irate", "increase"]), st.sampled_from(["1m", "5m", "$__interval"]))
def test_fixed_ranges_are_always_flagged(fn: str, rng: str) -> None:
    assert lint_expr(f"sum({fn}({GPU_UP.series}[{rng}]))")
    assert not lint_expr(f"sum({fn}({GPU_UP.series}[$__rate_interval]))")
