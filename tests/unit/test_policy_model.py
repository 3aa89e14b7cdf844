"""The servable policy folder: MLflow loads it on its own and it acts like the trained actor;
its metadata, paths and files are checked before anything of it is used."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
import pytest
import torch
import yaml
from mlflow import MlflowClient

from rl_core.policy.export import random_observations
from rl_core.policy.policy_integrity import (
    DIGESTS_TAG,
    PolicyIntegrityError,
    UnverifiedPolicyError,
    folder_digests,
    recorded_digests,
    verify_folder,
)
from rl_core.policy.policy_model import (
    PolicyFolderError,
    load_policy_actors,
    load_policy_folder,
    log_policy_model,
    read_policy_meta,
    save_policy_model,
)
from rl_core.sac.networks import Actor

ENV_ID = "Pendulum-v1"


@pytest.fixture
def actor() -> Actor:
    torch.manual_seed(3)
    return Actor(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved policy folder (saving takes a second): tests change copies of it."""
    torch.manual_seed(3)
    actor = Actor(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]))
    folder = tmp_path_factory.mktemp("pristine") / "policy"
    save_policy_model(actor, ENV_ID, folder)
    return folder


@pytest.fixture
def folder(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the saved policy folder, this test's to change."""
    return Path(shutil.copytree(pristine, tmp_path / "policy"))


def test_mlflow_pyfunc_loads_it_and_it_acts_like_the_actor(actor, tmp_path: Path) -> None:
    meta = save_policy_model(actor, ENV_ID, tmp_path / "policy")
    assert (meta.env_id, meta.obs_dim, meta.act_dim) == (ENV_ID, 3, 1)
    assert meta.max_abs_diff_vs_eager <= 1e-5

    model = mlflow.pyfunc.load_model(str(tmp_path / "policy"))
    observations = random_observations(ENV_ID, 7, seed=5)
    with torch.inference_mode():
        expected = actor.deterministic_action(observations).numpy()
    for batch in (observations[:1], observations):
        actions = model.predict(batch.numpy())
        assert actions.shape == (len(batch), 1)
        assert abs(actions - expected[: len(batch)]).max() <= 1e-5
    signature = model.metadata.signature
    assert signature.inputs.inputs[0].shape == (-1, 3)
    assert signature.outputs.inputs[0].shape == (-1, 1)
    assert (tmp_path / "policy" / "input_example.json").exists()


def test_the_fast_path_reads_the_same_folder(actor, tmp_path: Path) -> None:
    save_policy_model(actor, ENV_ID, tmp_path / "policy")
    module, meta = load_policy_folder(tmp_path / "policy")
    observations = random_observations(ENV_ID, 16, seed=6)
    with torch.inference_mode():
        torch.testing.assert_close(module(observations), actor.deterministic_action(observations))
    assert read_policy_meta(tmp_path / "policy")[0] == meta


def test_a_folder_that_is_not_a_policy_is_named(actor, tmp_path: Path) -> None:
    with pytest.raises(PolicyFolderError, match=f"{tmp_path} is not an MLflow model folder"):
        read_policy_meta(tmp_path)
    save_policy_model(actor, ENV_ID, tmp_path / "policy")
    mlmodel = tmp_path / "policy" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("rlops:", "someone_else:"))
    with pytest.raises(PolicyFolderError, match="not an rlops policy"):
        read_policy_meta(tmp_path / "policy")


def _edit_mlmodel(folder: Path, edit: Callable[[dict], None]) -> None:
    mlmodel = folder / "MLmodel"
    content = yaml.safe_load(mlmodel.read_text())
    edit(content)
    mlmodel.write_text(yaml.safe_dump(content))


def _set_meta(field: str, value: object) -> Callable[[dict], None]:
    return lambda content: content["metadata"]["rlops"].__setitem__(field, value)


def _set_actor_path(value: str, artifact: str = "actor") -> Callable[[dict], None]:
    def edit(content: dict) -> None:
        content["flavors"]["python_function"]["artifacts"][artifact]["path"] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_set_meta("env_id", "../x"), r"metadata\.rlops: env_id: String should match pattern"),
        (_set_meta("env_id", "Pendulum-v1; rm -rf ~"), r"env_id: String should match pattern"),
        (_set_meta("obs_dim", 0), r"obs_dim: Input should be greater than or equal to 1"),
        (_set_meta("act_dim", 10**9), r"act_dim: Input should be less than or equal to 65536"),
        (_set_meta("env_packages", ["os; x"]), r"env_packages\.0: String should match pattern"),
        (_set_meta("run_this", "code"), r"run_this: Extra inputs are not permitted"),
        (_set_actor_path("../x"), r"artifacts\.actor\.path is '\.\./x'; it must be a relative"),
        (_set_actor_path("/etc/passwd"), r"artifacts\.actor\.path is '/etc/passwd'; it must be"),
        (
            _set_actor_path("../actor.onnx", "actor_onnx"),
            r"artifacts\.actor_onnx\.path is '\.\./actor\.onnx'; it must be a relative",
        ),
    ],
    ids=[
        *("env-id-path", "env-id-shell", "obs-dim", "act-dim", "package", "extra", "up", "abs"),
        "onnx-up",
    ],
)
def test_metadata_and_paths_are_validated_naming_the_field(folder: Path, edit, named: str) -> None:
    _edit_mlmodel(folder, edit)
    with pytest.raises(PolicyFolderError, match=named):
        load_policy_folder(folder)


def test_an_actor_path_that_leaves_the_folder_through_a_symlink_is_refused(
    folder: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "actor.pt").write_bytes((folder / "artifacts" / "actor.pt").read_bytes())
    (folder / "artifacts" / "escape").symlink_to(outside)
    _edit_mlmodel(folder, _set_actor_path("artifacts/escape/actor.pt"))
    with pytest.raises(PolicyFolderError, match=r"leads out of the model folder .* symlink"):
        read_policy_meta(folder)


def test_every_file_of_the_folder_is_hashed(folder: Path) -> None:
    digests = folder_digests(folder)
    assert {"MLmodel", "artifacts/actor.pt", "pyfunc_policy.py", "requirements.txt"} <= set(digests)
    assert set(digests) == {p.relative_to(folder).as_posix() for p in folder.rglob("*.*")} | {
        "MLmodel"
    }
    verify_folder(folder, digests, "v1")  # the folder as saved passes


def test_a_changed_file_is_refused_naming_it_and_both_digests(folder: Path) -> None:
    digests = folder_digests(folder)
    code = folder / "pyfunc_policy.py"
    code.write_text(code.read_text() + "\nimport os\n")
    changed = folder_digests(folder)["pyfunc_policy.py"]
    with pytest.raises(PolicyIntegrityError) as refused:
        verify_folder(folder, digests, "m v1")
    assert str(refused.value) == (
        f"m v1: pyfunc_policy.py has sha256 {changed}, but sha256 {digests['pyfunc_policy.py']}"
        " was registered: the file was changed after registration"
    )


def test_the_folder_holds_the_onnx_actor_its_digest_covers_and_it_acts_like_the_actor(
    folder: Path, actor: Actor
) -> None:
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"]["artifacts"]
    assert artifacts["actor_onnx"]["path"] == "artifacts/actor.onnx"
    assert mlmodel["metadata"]["rlops"]["onnx_max_abs_diff_vs_eager"] <= 1e-5
    digests = folder_digests(folder)
    assert "artifacts/actor.onnx" in digests
    actors, _ = load_policy_actors(folder)
    observations = random_observations(ENV_ID, 16, seed=6)
    with torch.inference_mode():
        expected = actor.deterministic_action(observations)
        torch.testing.assert_close(actors.onnx(observations), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(actors.torchscript(observations), expected)
    onnx_file = folder / "artifacts" / "actor.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(PolicyIntegrityError, match=r"m v1: artifacts/actor\.onnx has sha256"):
        verify_folder(folder, digests, "m v1")


def test_a_folder_saved_before_the_onnx_export_loads_torchscript_alone(folder: Path) -> None:
    def drop_onnx(content: dict) -> None:
        del content["flavors"]["python_function"]["artifacts"]["actor_onnx"]
        del content["metadata"]["rlops"]["onnx_max_abs_diff_vs_eager"]

    _edit_mlmodel(folder, drop_onnx)
    (folder / "artifacts" / "actor.onnx").unlink()
    actors, meta = load_policy_actors(folder)
    assert actors.onnx is None
    assert meta.onnx_max_abs_diff_vs_eager is None
    with torch.inference_mode():
        assert actors.torchscript(torch.zeros(2, 3)).shape == (2, 1)


def test_a_missing_or_an_added_file_is_refused(folder: Path) -> None:
    digests = folder_digests(folder)
    (folder / "extra.py").write_text("print('hi')")
    with pytest.raises(PolicyIntegrityError, match=r"m v1: extra\.py \(sha256 [0-9a-f]{64}\) was"):
        verify_folder(folder, digests, "m v1")
    (folder / "extra.py").unlink()
    (folder / "artifacts" / "actor.pt").unlink()
    with pytest.raises(PolicyIntegrityError, match=r"m v1: artifacts/actor\.pt is missing"):
        verify_folder(folder, digests, "m v1")


def test_the_logged_model_records_the_digests_and_a_version_without_them_is_refused(
    actor, mlflow_store: str
) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("digests")).info.run_id
    logged = log_policy_model(actor, ENV_ID, run_id)
    tags = client.get_logged_model(logged.model_id).tags
    assert json.loads(tags[DIGESTS_TAG]) == logged.digests
    assert recorded_digests(tags, "x") == logged.digests
    with pytest.raises(UnverifiedPolicyError, match=r"^m v1 records no file digests .* predates"):
        recorded_digests({}, "m v1")
