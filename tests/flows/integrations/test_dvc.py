"""The DVC pipeline definition (dvc.yaml, params.yaml, data.dvc): lineage, knobs, metrics, git hygiene.

These checks read the repository as DVC itself loads it (no stage runs); tests/test_dvc_integration.py
reproduces the whole pipeline in a fresh clone and round-trips it through an S3 remote.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from svd_core.config import load_config
from svd_core.curation.config import FilterConfig, SubsetConfig
from tests.helpers import ROOT

STAGES = ("data.dvc", "lvd", "lvd_f", "subsets", "validation")
TEMPLATE = re.compile(r"\$\{\s*([\w.]+)\s*\}")


@pytest.fixture(scope="module")
def dvc_repo() -> Iterator[Any]:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        yield repo


@pytest.fixture(scope="module")
def stages(dvc_repo: Any) -> dict[str, Any]:
    return {stage.addressing: stage for stage in dvc_repo.index.stages}


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _commands(stage: Any) -> list[str]:
    return stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]


def _declared_params(stage: Any) -> set[str]:
    return {key for dep in stage.params for key in dep.params}


def test_stages_form_the_lineage_chain(dvc_repo: Any, stages: dict[str, Any]) -> None:
    assert set(stages) == set(STAGES)
    upstream: dict[str, set[str]] = {name: set() for name in stages}
    for stage, dependency in dvc_repo.index.graph.edges:  # DVC's edges point from a stage to its inputs
        upstream[stage.addressing].add(dependency.addressing)
    assert upstream == {
        "data.dvc": set(),
        "lvd": {"data.dvc"},
        "lvd_f": {"lvd"},
        "subsets": {"lvd", "lvd_f"},  # LVD-10M-F uses the filter config the lvd_f stage rendered
        "validation": {"lvd", "lvd_f", "subsets"},
    }


def test_data_dvc_tracks_the_raw_videos_and_names_their_generator(params: dict[str, Any]) -> None:
    spec = yaml.safe_load((ROOT / "data.dvc").read_text())
    (out,) = spec["outs"]
    assert out["path"] == "data/raw"
    assert out["md5"].endswith(".dir") and out["nfiles"] > 0
    command = spec["meta"]["regenerate"]
    assert command.startswith("svd data sample --out data/raw")
    assert f"--seed {params['sample']['seed']}" in command  # the documented regeneration uses params.yaml


def test_every_templated_knob_is_a_declared_param(stages: dict[str, Any], params: dict[str, Any]) -> None:
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    templated_somewhere = False
    for name, spec in raw.items():
        commands = spec["cmd"] if isinstance(spec["cmd"], list) else [spec["cmd"]]
        keys = {key for command in commands for key in TEMPLATE.findall(command)}
        templated_somewhere |= bool(keys)
        # Declared, so `dvc repro` reruns the stage when the knob changes ...
        assert keys <= _declared_params(stages[name]), name
        # ... and substituted by DVC with the value in params.yaml.
        resolved = " ".join(_commands(stages[name]))
        assert "${" not in resolved, name
        for key in keys:
            assert f"={_lookup(params, key)}" in resolved, (name, key)
    assert templated_somewhere


def test_metrics_are_the_published_funnel_files(stages: dict[str, Any]) -> None:
    # Names come from the configs the stages run with, so renaming a dataset without dvc.yaml fails here.
    filter_cfg = load_config(FilterConfig, ROOT / "configs/data/dvc_filter.yaml")
    subset_cfg = load_config(SubsetConfig, ROOT / "configs/data/subset.yaml")
    metrics = {str(out) for stage in stages.values() for out in stage.outs if out.metric}
    for name in (filter_cfg.name, subset_cfg.name, subset_cfg.filtered_name):
        assert (
            f"data/curated/{name}_metrics.json" in metrics
        )  # publish_dataset writes OUT/<name>_metrics.json
    for name in (filter_cfg.name, subset_cfg.filtered_name, "lvd"):
        assert f"data/validation/{name}/{name}_validation.json" in metrics


def test_no_data_output_can_reach_git(stages: dict[str, Any]) -> None:
    paths = sorted({str(out) for stage in stages.values() for out in stage.outs})
    assert "data/raw" in paths and "data/lvd" in paths
    for path in paths:
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not git-ignored"
        tracked = subprocess.run(["git", "ls-files", path], cwd=ROOT, capture_output=True, text=True)
        assert tracked.stdout == "", f"{path} is tracked by git"


def test_rendered_filter_config_carries_the_params(stages: dict[str, Any], params: dict[str, Any]) -> None:
    """Run the lvd_f stage's render command as DVC resolved it; the filter config it prints has the knobs."""
    from flows.cli.main import app

    (render,) = [c for c in _commands(stages["lvd_f"]) if c.startswith("svd config validate")]
    argv = shlex.split(render)
    redirect = argv.index(">")
    assert argv[redirect + 1] == "data/curated/lvd_f_filter.yaml"
    result = CliRunner().invoke(app, argv[1:redirect])
    assert result.exit_code == 0, result.output
    rendered = FilterConfig.model_validate(yaml.safe_load(result.stdout))
    assert rendered.scores.flow_score.min.pct == params["filter"]["flow_score_min_pct"]
    assert rendered.scores.text_area_ratio.max.pct == params["filter"]["text_area_max_pct"]
    # Offline there are no scorer weights and the sample videos have no metadata: those filters stay off.
    assert not rendered.scores.aesthetic_score.enabled and not rendered.scores.clip_score.enabled
    assert not rendered.caption.enabled


def test_subsets_read_the_rendered_filter_config(stages: dict[str, Any]) -> None:
    (command,) = _commands(stages["subsets"])
    argv = shlex.split(command)
    assert argv[argv.index("--filter-config") + 1] == "data/curated/lvd_f_filter.yaml"
    assert "data/curated/lvd_f_filter.yaml" in {str(dep) for dep in stages["subsets"].deps}


def test_dvcignore_hides_bytecode_from_code_deps() -> None:
    patterns = (ROOT / ".dvcignore").read_text().splitlines()
    assert "__pycache__/" in patterns and "*.pyc" in patterns
