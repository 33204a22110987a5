"""MLflow registry integration on the embedded default: register with lineage, resolve, promote, rollback."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest

from flows.integrations import registry, tracking
from svd_core.errors import InputError


@pytest.fixture(scope="module")
def svd_home(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One embedded MLflow store for the module (creating its SQLite schema takes seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("registry_home")
        mp.setenv("SVD_HOME", str(home))
        yield home


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


def _register(tmp_path: Path, name: str, parent: str = "") -> registry.ResolvedModel:
    folder = tmp_path / f"pipe-{len(list(tmp_path.glob('pipe-*')))}"
    folder.mkdir(exist_ok=True)
    (folder / "model_index.json").write_text("{}")
    with tracking.run("registry-test", "stage"):
        return registry.register_pipeline(folder, name, {"svd.parent_model_version": parent}, Echo())


def test_register_resolve_promote_rollback(svd_home: Path, tmp_path: Path) -> None:
    v1 = _register(tmp_path, "svd-flow")
    v2 = _register(tmp_path, "svd-flow", parent=v1.uri)
    assert (v1.version, v2.version) == ("1", "2")
    assert registry.resolve("models:/svd-flow/2").tags["svd.parent_model_version"] == "models:/svd-flow/1"
    assert (registry.download_pipeline("models:/svd-flow/1") / "model_index.json").is_file()

    assert registry.promote("svd-flow", "1", {"reason": "first"}) is None
    assert registry.resolve("models:/svd-flow@champion").version == "1"
    assert registry.promote("svd-flow", "2", {"win_rate_lower": "0.61"}) == "1"
    assert registry.resolve("models:/svd-flow@champion").version == "2"
    assert registry.resolve("models:/svd-flow@previous").version == "1"
    assert registry.resolve("models:/svd-flow/2").tags["svd.promotion.win_rate_lower"] == "0.61"

    assert registry.rollback("svd-flow") == "1"
    assert registry.resolve("models:/svd-flow@champion").version == "1"
    assert registry.resolve("models:/svd-flow@previous").version == "2"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("models:/nothing/1", "no registered model named 'nothing'"),
        ("svd-test/1", "not of the form models:/NAME/VERSION"),
        ("models:/svd-test/7", "versions: [1], aliases: []"),
        ("models:/svd-test@champion", "versions: [1]"),
    ],
)
def test_unknown_versions_are_clear_errors(svd_home: Path, tmp_path: Path, uri: str, fragment: str) -> None:
    if not registry.resolve_or_none("models:/svd-test/1"):
        _register(tmp_path, "svd-test")
    with pytest.raises(InputError) as info:
        registry.resolve(uri)
    assert fragment in str(info.value)


def test_rollback_without_previous(svd_home: Path, tmp_path: Path) -> None:
    _register(tmp_path, "svd-lonely")
    with pytest.raises(InputError, match="no 'previous' alias"):
        registry.rollback("svd-lonely")


def test_models_alias_command_sets_candidate_and_refuses_champion(
    svd_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main as cli_main

    monkeypatch.setattr(cli_main, "_activate", lambda args: None)  # the module's store is configured
    _register(tmp_path, "svd-alias")
    _register(tmp_path, "svd-alias")
    with pytest.raises(SystemExit) as done:
        cli_main.main(["models", "alias", "models:/svd-alias/1", "candidate"])
    assert done.value.code == 0
    assert "models:/svd-alias@candidate -> version 1" in capsys.readouterr().out
    assert registry.resolve("models:/svd-alias@candidate").version == "1"  # not the highest (2)
    with pytest.raises(SystemExit) as refused:
        cli_main.main(["models", "alias", "models:/svd-alias/2", "champion"])
    assert refused.value.code == 2 and "svd eval promote" in capsys.readouterr().err
    assert registry.resolve_or_none("models:/svd-alias@champion") is None


def test_versions_are_logged_as_code_with_a_validated_input_example(svd_home: Path, tmp_path: Path) -> None:
    """No cloudpickle in a registered version: MLflow's models-from-code file names the class, the input
    example is stored, and the version loads and predicts through it in a fresh process's way (load_model)."""
    import pandas as pd
    import yaml

    from flows.integrations.pyfunc import MODEL_CODE_FILE, video_input_example, video_signature

    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    example = video_input_example("image")
    with tracking.run("registry-test", "as-code"):
        model = registry.register_pipeline(
            folder, "svd-code", {}, Echo(), signature=video_signature(), input_example=example
        )
    local = Path(mlflow.artifacts.download_artifacts(f"models:/svd-code/{model.version}"))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor.get("model_code_path", "").endswith(MODEL_CODE_FILE)
    assert "from tests.flows.integrations.test_registry import Echo" in (local / MODEL_CODE_FILE).read_text()
    assert not list(local.rglob("*.pkl")), "the model must not be a cloudpickle"
    assert (local / "input_example.json").is_file()
    loaded = mlflow.pyfunc.load_model(f"models:/svd-code/{model.version}")
    out = loaded.predict(example[0], params=example[1])
    assert isinstance(out, pd.DataFrame) and list(out["image"]) == ["conditioning.png"]


def test_an_instance_with_state_is_logged_as_the_object(tmp_path: Path) -> None:
    from flows.integrations.pyfunc import model_code_file

    stateful = Echo()
    stateful.threshold = 3  # type: ignore[attr-defined]
    assert model_code_file(stateful, tmp_path) is stateful
    assert Path(str(model_code_file(Echo(), tmp_path))).read_text().count("set_model(Echo())") == 1


def test_a_run_logged_inside_a_prefect_flow_names_its_flow_run(svd_home: Path) -> None:
    """The dashboard links an MLflow run to the Prefect flow run that logged it through this tag."""
    from prefect import flow
    from prefect.runtime import flow_run

    from flows.integrations.tags import PREFECT_FLOW_RUN

    @flow(name="tracking-tag-test")
    def logged() -> tuple[str, str]:
        with tracking.run("registry-test", "in-a-flow") as active:
            return active.info.run_id, str(flow_run.id)

    run_id, flow_run_id = logged()
    assert mlflow.get_run(run_id).data.tags[PREFECT_FLOW_RUN] == flow_run_id
    with tracking.run("registry-test", "outside") as outside:
        pass
    assert PREFECT_FLOW_RUN not in mlflow.get_run(outside.info.run_id).data.tags
