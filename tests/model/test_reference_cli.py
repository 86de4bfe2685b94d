"""Done-when of issue 13: a checkpoint of the reference training code (``model.zip`` with ``_orig_mod.module.``
key prefixes, CUDA-layout sLSTM kernels, unused heads, and the run's config.yaml with unresolved Hydra
interpolations) goes through ``lram info``, ``lram export`` and ``lram verify`` from the command line for a task
of every domain, state and image observations, without any simulator. Errors on the way are one line."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from lram.cli.main import cli
from lram.model.config import TaskSpec
from lram.runtime.manifest import Manifest, sidecar_path

# One task of each domain; mimicgen has no observation size in the registry, so it is given.
DOMAIN_TASKS = [
    ("metaworld:reach-v2", []),
    ("dmcontrol:cheetah-run", []),
    ("atari:BreakoutNoFrameskip-v4", []),
    ("procgen:bigfish", []),
    ("composuite:IIWA_Box_None_PickPlace", []),
    ("mimicgen:stack_d0", ["--obs-dim", "30"]),
]
ANY_TASK = TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                    action_low=(-1.0,) * 4, action_high=(1.0,) * 4)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One multi-domain [7:1] reference checkpoint (state and image encoders) and its Hydra run directory."""
    from .conftest import make_model, write_reference_zip

    model = make_model("tiny", ANY_TASK, seed=11, encoders=("state", "image"))
    root = tmp_path_factory.mktemp("run")
    zpath, yaml_path = write_reference_zip(model, root / "model.zip")
    assert "${" in yaml_path.read_text()  # the interpolations are saved unresolved, as Hydra does
    return zpath, yaml_path


def _run(args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res


@pytest.mark.parametrize("task_id,extra", DOMAIN_TASKS, ids=[t.split(":")[0] for t, _ in DOMAIN_TASKS])
def test_info_export_verify_for_every_domain(tmp_path, reference_run, task_id, extra):
    zpath, yaml_path = reference_run
    common = ["--env", task_id, "--hydra-config", yaml_path, *extra]

    res = _run(["info", zpath, *common, "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["task"]["name"] == task_id and info["flavour"] == "[7:1]"
    for said in ("_orig_mod.", "module.", "unused heads dropped: embed_action_disc, embed_timestep, predict_return",
                 "sLSTM blocks [1] converted from the CUDA kernel layout", "from the task registry"):
        assert said in res.stderr, res.stderr

    out = tmp_path / "g.onnx"
    res = _run(["export", zpath, "-o", out, *common])
    assert res.exit_code == 0, res.output
    assert "converted from the CUDA kernel layout" in res.output
    manifest = Manifest.from_json(sidecar_path(out).read_text())
    assert manifest.action["decode"] == "reference"
    assert manifest.observation["kind"] == info["task"]["obs_kind"]
    assert manifest.reward_scale == info["task"]["reward_scale"]

    res = _run(["verify", out, "--against", zpath, *common, "--steps", 6, "--robots", 2, "--window", 6])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "simulator phase skipped" in res.output


def test_mlstm_only_checkpoint_and_bin_center_decode(tmp_path):
    from .conftest import make_model, write_reference_zip

    model = make_model("tiny-mlstm", ANY_TASK, seed=12, encoders=("state",))
    zpath, yaml_path = write_reference_zip(model, tmp_path / "run" / "model.zip")
    common = ["--env", "metaworld:reach-v3", "--hydra-config", yaml_path.parent.parent]  # the run directory
    out = tmp_path / "g.onnx"
    res = _run(["export", zpath, "-o", out, *common, "--decode", "bin_center"])
    assert res.exit_code == 0, res.output
    assert Manifest.from_json(sidecar_path(out).read_text()).action["decode"] == "bin_center"
    # verify takes the graph's decode from its manifest when --decode is not given ...
    res = _run(["verify", out, "--against", zpath, *common, "--steps", 4, "--robots", 1, "--window", 4])
    assert res.exit_code == 0, res.output
    # ... and a model decoded another way is another model
    res = _run(["verify", out, "--against", zpath, *common, "--steps", 4, "--robots", 1, "--decode", "reference"])
    assert res.exit_code == 1 and "exported for another task" in res.output and "action_decode" in res.output


def _one_line_error(res, *words):
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.output
    for w in words:
        assert w in lines[0], lines[0]


def test_errors_are_one_line_naming_the_fix(tmp_path, reference_run):
    zpath, yaml_path = reference_run
    out = tmp_path / "g.onnx"
    _one_line_error(_run(["export", zpath, "-o", out, "--env", "atari:Breakot"]), "unknown atari task",
                    "BreakoutNoFrameskip-v4")
    _one_line_error(_run(["export", zpath, "-o", out, "--env", "metaworld:reach-v22"]), "did you mean",
                    "metaworld:reach-v2")
    _one_line_error(_run(["info", zpath]), "--env DOMAIN:TASK")
    _one_line_error(_run(["export", zpath, "-o", out, "--env", "mimicgen:stack_d0"]), "--obs-dim")
    wrong = tmp_path / "wrong.zip"
    wrong.write_bytes(b"not a zip at all")
    _one_line_error(_run(["info", wrong, "--env", "metaworld:reach-v2"]), "not a zip file")
    bad = yaml.safe_load(yaml_path.read_text())
    bad["agent_params"]["huggingface"]["n_layer"] = 5
    bad_yaml = tmp_path / "config.yaml"
    bad_yaml.write_text(yaml.safe_dump(bad))
    _one_line_error(_run(["export", zpath, "-o", out, "--env", "metaworld:reach-v2", "--hydra-config", bad_yaml]),
                    "disagree", "num_blocks")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({**yaml.safe_load(yaml_path.read_text()), "env_params": {"envid": ["bigfish"]}}))
    _one_line_error(_run(["export", zpath, "-o", out, "--env", "metaworld:reach-v2", "--hydra-config", tasks]),
                    "not among the tasks", "drop --hydra-config")
    assert not out.exists()


def test_help_texts_name_real_options():
    res = _run(["verify", "--help"])
    assert "defaults to the checkpoint's task" not in res.output and "(required with a zip)" in res.output
    from lram.model.checkpoint import CheckpointError, read_checkpoint_meta

    with pytest.raises(CheckpointError) as err:
        read_checkpoint_meta(__file__)
    assert "--reference-config" not in str(err.value) and "--env DOMAIN:TASK" in str(err.value)


def test_evaluate_takes_a_reference_zip_the_same_way(reference_run):
    pytest.importorskip("gymnasium")
    zpath, yaml_path = reference_run
    res = _run(["evaluate", zpath, "--env", "gym:Pendulum-v1", "--hydra-config", yaml_path, "--episodes", 1,
                "--batch", 1, "--target-return", 0, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["env_steps"] == 200 and "converted from the CUDA kernel layout" in res.stderr
    _one_line_error(_run(["evaluate", zpath, "--env", "metaworld:reach-v2", "--episodes", 1]),
                    "no simulator", "metaworld:reach-v3")
