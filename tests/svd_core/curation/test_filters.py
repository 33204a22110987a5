"""LVD -> LVD-F filters and funnel statistics on seeded synthetic LVD tables."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from svd_core.config import load_config
from svd_core.curation.config import FilterConfig
from svd_core.curation.filters import EmptyResultError, apply_filters, resolve_thresholds
from svd_core.curation.funnel import compute_funnel
from svd_core.curation.schema import SCORE_COLUMNS
from svd_core.curation.subsets import synthetic_lvd_table
from svd_core.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def lvd() -> pd.DataFrame:
    return synthetic_lvd_table(2000, seed=3)


def cfg(*overrides: str) -> FilterConfig:
    return load_config(FilterConfig, None, overrides)


# --- config -------------------------------------------------------------------------------------------
def test_defaults_are_the_papers_thresholds() -> None:
    scores = FilterConfig().scores
    assert scores.flow_score.min.pct == 25 and scores.flow_score.max is None
    assert scores.text_area_ratio.max.pct == 75 and scores.text_area_ratio.min is None
    assert scores.aesthetic_score.min.pct == 25
    assert scores.clip_score.min.pct == 50


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["scores.motion.min.pct=25"], "scores"),
        (["scores.clip_score.min.pct=101"], "scores.clip_score.min.pct"),
        (["scores.clip_score.min.pct=-1"], "scores.clip_score.min.pct"),
        (["scores.clip_score.max.pct=10"], "scores.clip_score"),
        (["scores.flow_score.min.abs=3", "scores.flow_score.max.abs=1"], "scores.flow_score"),
        (["scores.flow_score.min.abs=3", "scores.flow_score.min.pct=3"], "scores.flow_score.min"),
        (["scores.flow_score.min=null"], "scores.flow_score"),
        (["min_duration_s=10", "max_duration_s=2"], "<root>"),
        (["order=[caption,duration]"], "order"),
        (["quantiles=[5,150]"], "quantiles"),
        (["name=../escape"], "name"),
    ],
)
def test_bad_config_names_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(*overrides)
    assert f"{field}:" in str(err.value)


def test_partial_override_keeps_the_other_defaults() -> None:
    c = cfg("scores.text_area_ratio.max.abs=0.07", "scores.clip_score.enabled=false")
    assert c.scores.text_area_ratio.max.abs == 0.07 and c.scores.text_area_ratio.max.pct is None
    assert c.scores.flow_score.min.pct == 25
    assert c.scores.clip_score.enabled is False and c.scores.clip_score.min.pct == 50


# --- thresholds -----------------------------------------------------------------------------------------
def test_percentile_thresholds_resolve_to_lvd_quantiles_and_are_recorded(lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, FilterConfig())
    expected = {
        "flow_score": ("min", np.percentile(lvd["flow_score"], 25)),
        "text_area_ratio": ("max", np.percentile(lvd["text_area_ratio"], 75)),
        "aesthetic_score": ("min", np.percentile(lvd["aesthetic_score"], 25)),
        "clip_score": ("min", np.percentile(lvd["clip_score"], 50)),
    }
    for column, (side, value) in expected.items():
        threshold = result.thresholds[column]
        assert getattr(threshold, side) == pytest.approx(value)
        assert getattr(threshold, f"{side}_spec").startswith("pct ")
    # each score filter alone removes its share of the distribution
    assert (~result.masks["flow_score"]).mean() == pytest.approx(0.25, abs=0.002)
    assert (~result.masks["clip_score"]).mean() == pytest.approx(0.5, abs=0.002)


def test_kept_rows_pass_every_bound_and_dropped_rows_fail_one(lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, FilterConfig())
    kept, t = result.kept, result.thresholds
    assert (kept["flow_score"] >= t["flow_score"].min).all()
    assert (kept["text_area_ratio"] <= t["text_area_ratio"].max).all()
    assert (kept["aesthetic_score"] >= t["aesthetic_score"].min).all()
    assert (kept["clip_score"] >= t["clip_score"].min).all()
    dropped = lvd.loc[~result.keep_mask]
    fails = (
        (dropped["flow_score"] < t["flow_score"].min)
        | (dropped["text_area_ratio"] > t["text_area_ratio"].max)
        | (dropped["aesthetic_score"] < t["aesthetic_score"].min)
        | (dropped["clip_score"] < t["clip_score"].min)
    )
    assert fails.all()
    assert len(kept) + len(dropped) == len(lvd)
    assert list(kept.index) == sorted(kept.index)  # input order kept


def test_absolute_threshold_is_used_as_given(lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, cfg("scores.text_area_ratio.max.abs=0.07"))
    assert result.thresholds["text_area_ratio"].max == 0.07
    assert result.thresholds["text_area_ratio"].max_spec == "abs 0.07"
    assert (~result.masks["text_area_ratio"]).sum() == (lvd["text_area_ratio"] > 0.07).sum()


def test_mixed_bounds_that_cross_after_resolution_are_a_config_error(lvd: pd.DataFrame) -> None:
    c = cfg("scores.clip_score.min.pct=90", "scores.clip_score.max.abs=0.0")
    with pytest.raises(ConfigError, match=r"scores\.clip_score: min \(pct 90"):
        apply_filters(lvd, c)


def test_input_order_does_not_change_thresholds_or_kept_rows(lvd: pd.DataFrame) -> None:
    shuffled = lvd.sample(frac=1.0, random_state=7)
    a, b = apply_filters(lvd, FilterConfig()), apply_filters(shuffled, FilterConfig())
    assert {k: v.to_dict() for k, v in a.thresholds.items()} == {
        k: v.to_dict() for k, v in b.thresholds.items()
    }
    assert set(a.kept["clip_id"]) == set(b.kept["clip_id"])


# --- null columns, captions, durations ------------------------------------------------------------------
def test_all_null_score_column_errors_unless_disabled() -> None:
    table = synthetic_lvd_table(200, seed=1, null_columns=("aesthetic_score",))
    with pytest.raises(ConfigError) as err:
        apply_filters(table, FilterConfig())
    assert "'aesthetic_score'" in str(err.value) and "scores.aesthetic_score.enabled=false" in str(err.value)
    result = apply_filters(table, cfg("scores.aesthetic_score.enabled=false"))
    assert "aesthetic_score" not in result.masks and "aesthetic_score" not in result.thresholds


def test_missing_score_column_is_an_input_error() -> None:
    table = synthetic_lvd_table(50, seed=1).drop(columns=["clip_score"])
    with pytest.raises(InputError, match=r"\['clip_score'\]"):
        apply_filters(table, FilterConfig())


def test_partially_null_scores_follow_drop_missing_scores() -> None:
    table = synthetic_lvd_table(400, seed=2)
    table.loc[:9, "flow_score"] = np.nan
    dropped = apply_filters(table, FilterConfig())
    assert not dropped.masks["flow_score"].iloc[:10].any()
    kept = apply_filters(table, cfg("drop_missing_scores=false"))
    assert kept.masks["flow_score"].iloc[:10].all()
    # percentiles are taken over the non-null scores only
    assert kept.thresholds["flow_score"].min == pytest.approx(np.percentile(table["flow_score"].dropna(), 25))


def test_caption_rules() -> None:
    table = synthetic_lvd_table(6, seed=0)
    table["caption"] = pd.Series(["a dog runs", "", "   ", None, "one", "a b c d"], dtype="str")
    table["caption_source"] = pd.Series(["llm", "llm", "llm", "llm", "coca", None], dtype="str")
    off = ["scores.flow_score.enabled=false", "scores.text_area_ratio.enabled=false"]
    off += ["scores.aesthetic_score.enabled=false", "scores.clip_score.enabled=false"]
    assert list(apply_filters(table, cfg(*off)).masks["caption"]) == [True, False, False, False, True, True]
    words = apply_filters(table, cfg(*off, "caption.min_words=3")).masks["caption"]
    assert list(words) == [True, False, False, False, False, True]
    sources = apply_filters(table, cfg(*off, "caption.allowed_sources=[llm]")).masks["caption"]
    assert list(sources) == [True, False, False, False, False, False]
    assert "caption" not in apply_filters(table, cfg(*off, "caption.enabled=false")).masks


def test_all_null_captions_error_unless_disabled() -> None:
    table = synthetic_lvd_table(50, seed=0, null_columns=("caption",))
    with pytest.raises(ConfigError, match=r"caption\.enabled=false"):
        apply_filters(table, FilterConfig())
    assert len(apply_filters(table, cfg("caption.enabled=false")).kept) > 0


def test_duration_bounds(lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, cfg("min_duration_s=5", "max_duration_s=20"))
    expected = (lvd["duration_s"] >= 5) & (lvd["duration_s"] <= 20)
    assert result.masks["duration"].equals(expected)
    assert "duration" not in apply_filters(lvd, FilterConfig()).masks


# --- bad input ------------------------------------------------------------------------------------------
def test_empty_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no rows"):
        apply_filters(synthetic_lvd_table(10).iloc[:0], FilterConfig())


def test_filters_that_remove_everything_raise_with_per_filter_counts(lvd: pd.DataFrame) -> None:
    with pytest.raises(EmptyResultError) as err:
        apply_filters(lvd, cfg("scores.clip_score.min.abs=0.99"))
    assert "removed all 2000 rows" in str(err.value) and "clip_score drops 2000/2000" in str(err.value)


def test_pre_resolved_thresholds_are_applied_as_given(lvd: pd.DataFrame) -> None:
    thresholds = resolve_thresholds(lvd, FilterConfig())
    part = lvd.iloc[:300]
    result = apply_filters(part, FilterConfig(), thresholds=thresholds)
    assert result.thresholds == thresholds
    assert set(result.kept["clip_id"]) <= set(apply_filters(lvd, FilterConfig()).kept["clip_id"])


# --- funnel ---------------------------------------------------------------------------------------------
def test_funnel_alone_and_cumulative_counts(lvd: pd.DataFrame) -> None:
    c = cfg("min_duration_s=3")
    result = apply_filters(lvd, c)
    funnel = compute_funnel(lvd, result, c)
    steps = funnel.steps.set_index("filter")
    assert list(steps.index) == ["duration", "caption", *SCORE_COLUMNS]
    hours = lvd["duration_s"] / 3600
    remaining = pd.Series(True, index=lvd.index)
    for name, mask in result.masks.items():
        assert steps.loc[name, "removed_alone_rows"] == (~mask).sum()
        assert steps.loc[name, "removed_alone_hours"] == pytest.approx(hours[~mask].sum())
        step_removed = remaining & ~mask
        assert steps.loc[name, "removed_in_order_rows"] == step_removed.sum()
        assert steps.loc[name, "removed_in_order_hours"] == pytest.approx(hours[step_removed].sum())
        remaining &= mask
        assert steps.loc[name, "remaining_rows"] == remaining.sum()
    assert steps["removed_in_order_rows"].sum() == len(lvd) - len(result.kept)
    m = funnel.metrics
    assert m["kept_rows"] == len(result.kept) and m["kept_fraction"] == pytest.approx(
        len(result.kept) / len(lvd)
    )
    assert m["kept_hours"] == pytest.approx(result.kept["duration_s"].sum() / 3600)
    assert m["input_hours"] == pytest.approx(hours.sum())


def test_funnel_order_follows_config(lvd: pd.DataFrame) -> None:
    order = "order=[clip_score,aesthetic_score,text_area_ratio,flow_score,caption,duration]"
    c = cfg(order)
    funnel = compute_funnel(lvd, apply_filters(lvd, c), c)
    assert list(funnel.steps["filter"]) == [
        "clip_score",
        "aesthetic_score",
        "text_area_ratio",
        "flow_score",
        "caption",
    ]
    # the first filter in order removes exactly what it removes alone
    first = funnel.steps.iloc[0]
    assert first["removed_in_order_rows"] == first["removed_alone_rows"] == 1000


def test_funnel_quantiles_and_json(lvd: pd.DataFrame) -> None:
    result = apply_filters(lvd, FilterConfig())
    funnel = compute_funnel(lvd, result, FilterConfig())
    q = funnel.metrics["quantiles"]
    assert q["before"]["clip_score"]["p50"] == pytest.approx(np.percentile(lvd["clip_score"], 50))
    assert q["after"]["clip_score"]["p5"] >= result.thresholds["clip_score"].min
    assert set(q["before"]["flow_score"]) == {"count", "p5", "p25", "p50", "p75", "p95", "mean"}
    parsed = json.loads(funnel.metrics_json())  # strict JSON: no NaN, no numpy scalars
    assert parsed["thresholds"]["clip_score"]["min_spec"] == "pct 50"
    assert parsed["filters"]["caption"]["removed_alone_rows"] == 0
    assert all("." not in key for key in _all_keys(parsed))  # DVC splits keys on dots
    assert "removed_in_order_rows" in funnel.steps_csv().decode().splitlines()[0]
    assert len(pd.read_csv(io.BytesIO(funnel.quantiles_csv()))) == 10


def _all_keys(data: object) -> list[str]:
    if not isinstance(data, dict):
        return []
    return [k for k in data] + [k2 for v in data.values() for k2 in _all_keys(v)]
