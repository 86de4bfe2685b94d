"""Our checkpoint format (directory: config.json + model.safetensors) and the reference training code's
``model.zip`` (SB3 style, CUDA-layout sLSTM kernels, config in the Hydra run directory)."""
from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import lram.model.checkpoint as ckpt
from lram.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from lram.model.config import ConfigError
from lram.model.reference_checkpoint import (
    UNUSED_PREFIXES,
    load_reference_zip,
    read_reference_state_dict,
    strip_prefixes,
)

torch.set_num_threads(1)


def logits_of(model, task, episode, seed=0, B=2, T=6):
    obs, rtg, rewards = episode(task, B, T, seed=seed)
    with torch.no_grad():
        return model(obs, rtg, rewards)


# ---- our format ---------------------------------------------------------------------------------------------
def test_round_trip_gives_identical_logits(tmp_path, tiny_state_model, episode):
    model = tiny_state_model
    path = save_checkpoint(model, tmp_path / "ckpt", extra={"note": "test"})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.task == model.task
    assert not loaded.training
    assert torch.equal(logits_of(loaded, model.task, episode), logits_of(model, model.task, episode))
    meta = read_checkpoint_meta(path)
    assert meta["parameters"] == model.parameter_count() and meta["extra"] == {"note": "test"}


def test_save_overwrites_an_existing_checkpoint(tmp_path, model_factory, state_task, episode):
    a, b = model_factory("tiny", state_task, seed=1), model_factory("tiny", state_task, seed=2)
    save_checkpoint(a, tmp_path / "ckpt")
    save_checkpoint(b, tmp_path / "ckpt")
    assert torch.equal(logits_of(load_checkpoint(tmp_path / "ckpt"), state_task, episode), logits_of(b, state_task, episode))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def _boom_after_partial_write(tensors, filename, *args, **kwargs):
    Path(filename).write_bytes(b"half a safetensors file")
    raise OSError("disk full (simulated)")


def test_failed_save_leaves_the_old_checkpoint_intact(tmp_path, model_factory, state_task, episode, monkeypatch):
    old, new = model_factory("tiny", state_task, seed=1), model_factory("tiny", state_task, seed=2)
    path = save_checkpoint(old, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    monkeypatch.setattr(ckpt, "save_file", _boom_after_partial_write)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(new, path)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "a temporary directory was left behind"
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert torch.equal(logits_of(load_checkpoint(path), state_task, episode), logits_of(old, state_task, episode))


def test_failed_first_save_leaves_nothing(tmp_path, tiny_state_model, monkeypatch):
    monkeypatch.setattr(ckpt, "save_file", _boom_after_partial_write)
    with pytest.raises(OSError):
        save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_failure_between_the_two_renames_keeps_the_old_checkpoint(tmp_path, model_factory, state_task, monkeypatch):
    old, new = model_factory("tiny", state_task, seed=1), model_factory("tiny", state_task, seed=2)
    path = save_checkpoint(old, tmp_path / "ckpt")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".ckpt.") and not Path(src).name.endswith(".old"):
            raise OSError("crash while installing the new checkpoint (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(OSError):
        save_checkpoint(new, path)
    monkeypatch.undo()
    assert load_checkpoint(path).config == old.config


def test_missing_config_json(tmp_path, tiny_state_model):
    path = save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(path)


def test_missing_checkpoint_and_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "model.zip").write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="load_reference_zip"):
        load_checkpoint(tmp_path / "model.zip")


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_wrong_format_version(tmp_path, tiny_state_model, version):
    path = save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = version
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(path)


def test_foreign_config_json(tmp_path, tiny_state_model):
    path = save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    (path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(CheckpointError, match="not an lram checkpoint"):
        load_checkpoint(path)


def _edit_weights(path: Path, fn):
    tensors = load_file(path / "model.safetensors")
    fn(tensors)
    save_file(tensors, path / "model.safetensors")


@pytest.mark.parametrize("edit,words", [
    (lambda t: t.__setitem__("embed_return.weight", torch.zeros(64, 2)), ["mis-shaped", "embed_return.weight", "(64, 2)", "(64, 1)"]),
    (lambda t: t.pop("encoder.layers.blocks.1.xlstm.slstm_cell._bias_"), ["missing", "encoder.layers.blocks.1.xlstm.slstm_cell._bias_"]),
    (lambda t: t.__setitem__("embed_timestep.weight", torch.zeros(3, 64)), ["unexpected", "embed_timestep.weight"]),
], ids=["mis-shaped", "missing", "unexpected"])
def test_key_errors_name_the_key(tmp_path, tiny_state_model, edit, words):
    path = save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    _edit_weights(path, edit)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    for w in words:
        assert w in str(err.value)


def test_unreadable_weights(tmp_path, tiny_state_model):
    path = save_checkpoint(tiny_state_model, tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)


# ---- the reference training code's model.zip ------------------------------------------------------------------
SLSTM = "encoder.layers.blocks.1.xlstm.slstm_cell."


def test_reference_zip_round_trip_7_1(tmp_path, tiny_state_model, reference_zip_writer, episode):
    src = tiny_state_model
    assert src.config.slstm_at == (1,)
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip")
    loaded = load_reference_zip(zpath, yaml_path, task=src.task)
    assert loaded.config == src.config
    diff = (logits_of(loaded, src.task, episode, T=8) - logits_of(src, src.task, episode, T=8)).abs().max().item()
    assert diff <= 1e-6
    report = loaded.reference_report
    assert report.stripped_prefixes == ["_orig_mod.module."]
    assert report.converted_slstm_blocks == [1] and report.slstm_layout == "cuda"
    assert report.dropped_keys and all(k.startswith(UNUSED_PREFIXES) for k in report.dropped_keys)
    assert {k.split(".")[0] for k in report.dropped_keys} == {p.rstrip(".") for p in UNUSED_PREFIXES}
    assert report.hydra_values["num_blocks"][0] == 2  # read through the ${...} interpolation


def test_reference_zip_also_loads_from_the_run_dir_a_dict_or_no_config(tmp_path, tiny_state_model, reference_zip_writer,
                                                                       hydra_config, episode):
    src = tiny_state_model
    zpath, _ = reference_zip_writer(src, tmp_path / "run" / "model.zip")
    want = logits_of(src, src.task, episode)
    for cfg in (tmp_path / "run", hydra_config(src), None):
        loaded = load_reference_zip(zpath, cfg, src.task)
        assert loaded.config == src.config
        assert (logits_of(loaded, src.task, episode) - want).abs().max().item() <= 1e-6


def test_the_slstm_layout_conversion_matters(tmp_path, tiny_state_model, reference_zip_writer, episode):
    """Loading the CUDA-layout tensors as they are (reshaped to fit) gives different logits; so does skipping
    either the kernel's or the bias's conversion alone."""
    src = tiny_state_model
    zpath, _ = reference_zip_writer(src, tmp_path / "model.zip", hydra=False)
    sd, _ = strip_prefixes(read_reference_state_dict(zpath))
    ours = src.state_dict()
    assert sd[SLSTM + "_recurrent_kernel_"].shape != ours[SLSTM + "_recurrent_kernel_"].shape  # [NH, DH, 4DH] vs [NH, 4DH, DH]
    assert sd[SLSTM + "_bias_"].shape == ours[SLSTM + "_bias_"].shape and not torch.equal(sd[SLSTM + "_bias_"], ours[SLSTM + "_bias_"])
    want = logits_of(src, src.task, episode)
    naive_kernel = sd[SLSTM + "_recurrent_kernel_"].reshape(ours[SLSTM + "_recurrent_kernel_"].shape)
    for skip in ("both", "kernel", "bias"):
        fixed = dict(ours)
        if skip in ("both", "kernel"):
            fixed[SLSTM + "_recurrent_kernel_"] = naive_kernel
        if skip in ("both", "bias"):
            fixed[SLSTM + "_bias_"] = sd[SLSTM + "_bias_"]
        model = type(src)(src.config, src.task).eval()
        model.load_state_dict(fixed)
        d = (logits_of(model, src.task, episode) - want).abs().max().item()
        assert d > 1e-3, f"without the {skip} conversion the logits would still match ({d:.2e})"
    # and declaring the wrong layout is caught by shape, naming the key
    with pytest.raises(CheckpointError, match=r"encoder\.layers\.blocks\.1\.xlstm\.slstm_cell\._recurrent_kernel_"):
        load_reference_zip(zpath, None, src.task, slstm_layout="vanilla")


def test_vanilla_layout_zip_is_diagnosed(tmp_path, tiny_state_model, reference_zip_writer, episode):
    src = tiny_state_model
    zpath, _ = reference_zip_writer(src, tmp_path / "model.zip", cuda_layout=False, hydra=False)
    with pytest.raises(CheckpointError, match="slstm_layout='vanilla'"):
        load_reference_zip(zpath, None, src.task)
    loaded = load_reference_zip(zpath, None, src.task, slstm_layout="vanilla")
    assert torch.equal(logits_of(loaded, src.task, episode), logits_of(src, src.task, episode))


@pytest.mark.parametrize("prefix", ["_orig_mod.module.", "module._orig_mod.", "module.", "_orig_mod.", ""])
def test_reference_prefixes_in_either_order(tmp_path, tiny_state_model, reference_zip_writer, prefix, episode):
    src = tiny_state_model
    zpath, _ = reference_zip_writer(src, tmp_path / "model.zip", prefix=prefix, hydra=False)
    loaded = load_reference_zip(zpath, task=src.task)
    assert loaded.reference_report.stripped_prefixes == ([prefix] if prefix else [])
    assert torch.equal(logits_of(loaded, src.task, episode), logits_of(src, src.task, episode))


def test_reference_mlstm_only_and_image_only(tmp_path, model_factory, image_task, state_task, reference_zip_writer, episode):
    src = model_factory("tiny-mlstm", image_task, seed=4, encoders=("image",))
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip")
    loaded = load_reference_zip(zpath, yaml_path, image_task)
    assert loaded.config == src.config and loaded.config.encoders == ("image",) and loaded.config.slstm_at == ()
    assert loaded.reference_report.converted_slstm_blocks == []
    assert (logits_of(loaded, image_task, episode, T=3) - logits_of(src, image_task, episode, T=3)).abs().max().item() <= 1e-6
    with pytest.raises(CheckpointError, match="cannot serve this task"):
        load_reference_zip(zpath, yaml_path, state_task)


@pytest.mark.parametrize("changes,words", [
    ({"agent_params.huggingface.n_layer": 3}, ["num_blocks", "agent_params.huggingface.xlstm_config.num_blocks", "3", "2"]),
    ({"agent_params.huggingface.hidden_size": 128}, ["embedding_dim", "128", "64"]),
    ({"agent_params.huggingface.xlstm_config.slstm_at": [0]}, ["slstm_at", "[0]", "(1,)"]),
    ({"agent_params.huggingface.n_head": 8}, ["num_heads", "agent_params.huggingface.n_head", "8", "4"]),
    ({"agent_params.model_kwargs.state_dim": 100}, ["state_dim", "100", "204"]),
], ids=["num_blocks", "embedding_dim", "slstm_at", "num_heads", "state_dim"])
def test_hydra_config_conflicts_name_both_values(tmp_path, tiny_state_model, reference_zip_writer, hydra_config,
                                                 changes, words):
    src = tiny_state_model
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip", hydra=hydra_config(src, **changes))
    with pytest.raises(CheckpointError) as err:
        load_reference_zip(zpath, yaml_path, src.task)
    msg = str(err.value)
    assert "disagree" in msg
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"


def test_hydra_config_context_length_is_used(tmp_path, tiny_state_model, reference_zip_writer, hydra_config):
    src = tiny_state_model
    cfg = hydra_config(src, **{"agent_params.huggingface.max_length": 20})
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip", hydra=cfg)
    loaded = load_reference_zip(zpath, yaml_path, src.task)
    assert loaded.config.context_timesteps == 20
    assert any("context_length" in n for n in loaded.reference_report.notes)  # 150 != 3 x 20


def test_unrelated_yaml_is_tolerated(tmp_path, tiny_state_model, reference_zip_writer):
    src = tiny_state_model
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip", hydra={"seed": 1, "run_params": {"x": 2}})
    loaded = load_reference_zip(zpath, yaml_path, src.task)
    assert loaded.config == src.config and loaded.reference_report.notes


@pytest.mark.parametrize("key,words", [
    ("action_net.0.bias", ["missing", "action_net.0.bias"]),
    ("encoder.layers.blocks.0.xlstm.mlstm_cell.outnorm.weight", ["missing", "outnorm.weight"]),
])
def test_reference_missing_key_is_named(tmp_path, tiny_state_model, reference_zip_writer, key, words):
    zpath, _ = reference_zip_writer(tiny_state_model, tmp_path / "model.zip", drop=(key,), hydra=False)
    with pytest.raises(CheckpointError) as err:
        load_reference_zip(zpath, task=tiny_state_model.task)
    for w in words:
        assert w in str(err.value)


def _policy_bytes(sd) -> bytes:
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def test_reference_misshaped_and_unexpected_keys_are_named(tmp_path, tiny_state_model, reference_zip_writer):
    src = tiny_state_model
    zpath, _ = reference_zip_writer(src, tmp_path / "model.zip", hydra=False)
    sd = read_reference_state_dict(zpath)
    sd["_orig_mod.module.embed_return.weight"] = torch.zeros(64, 3)
    sd["_orig_mod.module.predict_action.weight"] = torch.zeros(2, 64)
    zpath, _ = reference_zip_writer(src, tmp_path / "model2.zip", hydra=False, policy_bytes=_policy_bytes(sd))
    with pytest.raises(CheckpointError) as err:
        load_reference_zip(zpath, task=src.task)
    msg = str(err.value)
    assert "embed_return.weight: file (64, 3) vs model (64, 1)" in msg and "unexpected" in msg and "predict_action.weight" in msg


def test_foreign_zip(tmp_path, tiny_state_model, reference_zip_writer):
    # an SB3 PPO policy: a valid model.zip, just not an LRAM
    ppo = {"mlp_extractor.policy_net.0.weight": torch.zeros(64, 8), "action_net.weight": torch.zeros(4, 64),
           "value_net.weight": torch.zeros(1, 64)}
    zpath, _ = reference_zip_writer(tiny_state_model, tmp_path / "ppo.zip", hydra=False, policy_bytes=_policy_bytes(ppo))
    with pytest.raises(CheckpointError, match="does not look like an LRAM policy"):
        load_reference_zip(zpath, task=tiny_state_model.task)
    # a zip without policy.pth
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("data", "{}")
        zf.writestr("weights.bin", b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"no policy\.pth.*data, weights\.bin"):
        load_reference_zip(other, task=tiny_state_model.task)
    # not a zip at all; a missing file; a directory
    text = tmp_path / "model.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a zip"):
        load_reference_zip(text, task=tiny_state_model.task)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_zip(tmp_path / "absent.zip", task=tiny_state_model.task)
    with pytest.raises(CheckpointError, match="directory"):
        load_reference_zip(tmp_path, task=tiny_state_model.task)


def test_corrupted_zip(tmp_path, tiny_state_model, reference_zip_writer):
    task = tiny_state_model.task
    zpath, _ = reference_zip_writer(tiny_state_model, tmp_path / "model.zip", hydra=False)
    data = bytearray(zpath.read_bytes())
    # damage the middle of the compressed policy.pth (CRC / inflate error), keep the directory intact
    with zipfile.ZipFile(zpath) as zf:
        info = zf.getinfo("policy.pth")
    mid = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    for i in range(mid, mid + 64):
        data[i] ^= 0x5A
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_reference_zip(damaged, task=task)
    # truncated: the central directory is gone
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError):
        load_reference_zip(truncated, task=task)


@pytest.mark.parametrize("payload", [b"not a pickle at all", "truncated", "object", "list"])
def test_corrupted_policy_pth(tmp_path, tiny_state_model, reference_zip_writer, payload):
    src = tiny_state_model
    if payload == "truncated":
        good = _policy_bytes({k: v for k, v in src.state_dict().items()})
        payload = good[: len(good) // 3]
    elif payload == "object":  # weights_only=True refuses arbitrary pickled objects
        payload = _policy_bytes({"x": argparse.Namespace(a=1)})
    elif payload == "list":
        payload = _policy_bytes([torch.zeros(2)])
    zpath, _ = reference_zip_writer(src, tmp_path / "model.zip", hydra=False, policy_bytes=payload)
    with pytest.raises(CheckpointError, match=r"policy\.pth"):
        load_reference_zip(zpath, task=src.task)


def test_reference_loader_needs_a_task(tmp_path, tiny_state_model, reference_zip_writer):
    zpath, _ = reference_zip_writer(tiny_state_model, tmp_path / "model.zip", hydra=False)
    with pytest.raises(ConfigError, match="TaskSpec"):
        load_reference_zip(zpath)


def test_reference_zip_converts_to_our_checkpoint(tmp_path, tiny_state_model, reference_zip_writer, episode):
    """The intended path: reference zip -> our checkpoint directory -> identical logits."""
    src = tiny_state_model
    zpath, yaml_path = reference_zip_writer(src, tmp_path / "run" / "model.zip")
    model = load_reference_zip(zpath, yaml_path, src.task)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt"))
    assert torch.equal(logits_of(loaded, src.task, episode), logits_of(model, src.task, episode))
