"""``lram serve``: the starter contract and one-line errors (the node itself runs in test_loopback.py)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("cyclonedds", reason="needs cyclonedds (pip install 'lram-deploy[ros2]')")

from lram.cli.main import cli
from lram.runtime.ros2.contract import load_contract
from lram.runtime.ros2.starter import META_WORLD

from .conftest import contract_dict


@pytest.fixture(scope="module")
def meta_world_model(tmp_path_factory, fake):
    path = tmp_path_factory.mktemp("serve") / "mw.onnx"
    return fake.write_fake_policy(path, fake.make_manifest(obs_dim=39, act_dim=4, low=-1.0, high=1.0))


def test_write_contract_for_a_meta_world_policy_is_the_shipped_one(meta_world_model, tmp_path):
    out = tmp_path / "c.yaml"
    res = CliRunner().invoke(cli, ["serve", str(meta_world_model), "--write-contract", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == META_WORLD.read_text()
    res = CliRunner().invoke(cli, ["serve", str(meta_world_model), "--write-contract", str(out)])
    assert res.exit_code == 1 and "not overwriting" in res.output


def test_write_contract_for_another_policy_is_joint_space(joint_model, tmp_path, fake):
    out = tmp_path / "c.yaml"
    res = CliRunner().invoke(cli, ["serve", str(joint_model), "--write-contract", str(out)])
    assert res.exit_code == 0, res.output
    c = load_contract(out)
    assert c.obs_size == 6 and c.observation[0].joints == tuple(f"joint_{i}" for i in range(1, 7))
    assert c.action.low.tolist() == [-1.0] * 3


def test_serve_errors_are_one_line(joint_model, meta_world_model, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(contract_dict()))
    res = CliRunner().invoke(cli, ["serve", str(meta_world_model), "--ros2", str(path)])
    assert res.exit_code == 1 and "contract observation fills 6 values but the policy takes 39" in res.output
    assert "Traceback" not in res.output and res.output.count("\n") == 1
    res = CliRunner().invoke(cli, ["serve", str(joint_model), "--ros2", str(path), "--domain-id", "500"])
    assert res.exit_code == 1 and "--domain-id must be in 0..232" in res.output
    res = CliRunner().invoke(cli, ["serve", str(joint_model)])
    assert res.exit_code == 2 and "no contract: pass --ros2 CONTRACT or put joints.ros2.yaml beside" in res.output
    res = CliRunner().invoke(cli, ["serve", str(joint_model), "--ros2", str(path), "--write-contract", str(path)])
    assert res.exit_code == 2 and "not both" in res.output


def test_the_contract_beside_the_graph_is_found(meta_world_model, tmp_path):
    from lram.runtime.ros2.contract import contract_beside

    assert contract_beside(meta_world_model) is None
    beside = meta_world_model.with_name("mw.ros2.yaml")
    beside.write_text(META_WORLD.read_text())
    try:
        assert contract_beside(meta_world_model) == beside
        # the command finds it: a domain that is out of range fails after loading it, before any DDS starts
        res = CliRunner().invoke(cli, ["serve", str(meta_world_model), "--domain-id", "999"])
        assert res.exit_code == 1 and "--domain-id must be in 0..232" in res.output
    finally:
        beside.unlink()


def test_missing_cyclonedds_names_the_ros2_extra():
    import click

    from lram.cli.main import _guard_imports

    @click.command()
    def needs():
        raise ModuleNotFoundError("No module named 'cyclonedds'", name="cyclonedds")

    res = CliRunner().invoke(_guard_imports(needs, "serve"), [])
    assert res.exit_code == 1 and "lram-deploy[ros2]" in res.output and "Traceback" not in res.output


def test_the_core_runtime_and_cli_do_not_import_dds():
    import subprocess
    import sys

    code = ("import sys, lram.runtime.policy, lram.runtime.control_loop, lram.cli.main; "
            "from lram.cli.main import cli; cli.get_command(None, 'run'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cyclonedds', 'rosbags', 'yaml')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
