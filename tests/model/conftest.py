"""Shared fixtures for the model tests: tasks, perturbed tiny models, episode inputs, and a writer of
checkpoints in the reference training code's layout (SB3-style ``model.zip``; test use only)."""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from xlstm.blocks.slstm.cell import sLSTMCell_cuda

from lram.model.config import TaskSpec, preset
from lram.model.lram import LRAM

torch.set_num_threads(1)

REFERENCE_PREFIX = "_orig_mod.module."


# ---- tasks ------------------------------------------------------------------------------------------------
@pytest.fixture
def state_task() -> TaskSpec:
    return TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                    action_low=(-1.0,) * 4, action_high=(1.0,) * 4, reward_scale=200.0, name="metaworld-like")


@pytest.fixture
def image_task() -> TaskSpec:
    return TaskSpec(obs_kind="image", obs_shape=(64, 64, 3), action_kind="discrete", action_n=15,
                    reward_scale=1.0, name="procgen-like")


# ---- models -----------------------------------------------------------------------------------------------
@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter: the stock xlstm init zeroes gates and recurrent weights, which would make
    a parity test vacuous."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def make_model(name: str, task: TaskSpec, seed: int = 0, scale: float = 0.1, **overrides) -> LRAM:
    torch.manual_seed(seed)
    model = LRAM(preset(name, **overrides), task)
    perturb(model, scale, seed + 1)
    return model.eval()


@pytest.fixture
def model_factory():
    return make_model


@pytest.fixture(scope="module")
def tiny_state_model() -> LRAM:
    """A perturbed tiny [7:1] model on a low-dimensional continuous task (do not modify in tests)."""
    task = TaskSpec(obs_kind="state", obs_shape=(39,), action_kind="continuous", action_dim=4,
                    action_low=(-1.0,) * 4, action_high=(1.0,) * 4, reward_scale=200.0)
    return make_model("tiny", task, seed=3)


# ---- episode inputs ---------------------------------------------------------------------------------------
def random_episode(task: TaskSpec, batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """obs [B, T, ...], rtg [B, T], rewards [B, T] in raw units."""
    g = torch.Generator().manual_seed(seed)
    if task.obs_kind == "image":
        obs = torch.randint(0, 256, (batch, steps, *task.obs_shape), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn((batch, steps, *task.obs_shape), generator=g)
    scale = task.reward_scale
    rewards = scale * torch.rand((batch, steps), generator=g)
    rtg = scale * 5.0 - torch.cumsum(rewards, dim=1) + rewards  # return still to come, including r_t
    return obs, rtg, rewards


@pytest.fixture
def episode():
    return random_episode


# ---- reference-layout writer ------------------------------------------------------------------------------
@torch.no_grad()
def _vanilla_to_cuda(model: LRAM, sd: dict) -> dict:
    """Convert every sLSTM cell's kernel and bias from the vanilla backend's layout (ours) to the CUDA
    backend's (what the reference checkpoints hold), through the package's own int2ext / ext2int."""
    out = dict(sd)
    for i, block in enumerate(model.encoder.layers.blocks):
        cell = getattr(block.xlstm, "slstm_cell", None)
        if cell is None:
            continue
        cuda = sLSTMCell_cuda(dataclasses.replace(cell.config, backend="cuda"), skip_backend_init=True)
        pre = f"encoder.layers.blocks.{i}.xlstm.slstm_cell."
        kern = out[pre + "_recurrent_kernel_"]
        bias = out[pre + "_bias_"]
        out[pre + "_recurrent_kernel_"] = cuda._recurrent_kernel_ext2int(cell._recurrent_kernel_int2ext(kern)).contiguous()
        out[pre + "_bias_"] = cuda._bias_ext2int(cell._bias_int2ext(bias)).contiguous()
    return out


UNUSED_EXTRA = {  # keys the reference model carries but never uses at inference: name -> shape(H)
    "embed_timestep.weight": lambda H: (1000, H),
    "embed_action_disc.weight": lambda H: (275, H),
    "predict_state.weight": lambda H: (204, H),
    "predict_state.bias": lambda H: (204,),
    "predict_return.weight": lambda H: (1, H),
    "predict_return.bias": lambda H: (1,),
    "predict_reward.weight": lambda H: (1, H),
    "predict_reward.bias": lambda H: (1,),
}


def hydra_config_dict(model: LRAM, **changes) -> dict:
    """A composed Hydra config in the reference code's shape, with its unresolved interpolations."""
    cfg = model.config
    xcfg = {
        "mlstm_block": {"mlstm": {"conv1d_kernel_size": cfg.conv1d_kernel_size, "qkv_proj_blocksize": cfg.qkv_proj_blocksize,
                                  "num_heads": "${agent_params.huggingface.n_head}"}},
        "slstm_block": {"slstm": {"backend": "cuda", "num_heads": "${agent_params.huggingface.n_head}",
                                  "conv1d_kernel_size": cfg.conv1d_kernel_size, "bias_init": "powerlaw_blockdependent"},
                        "feedforward": {"proj_factor": cfg.ffn_proj_factor, "act_fn": "gelu"}},
        "context_length": 3 * cfg.context_timesteps,
        "num_blocks": "${agent_params.huggingface.n_layer}",
        "embedding_dim": "${agent_params.huggingface.hidden_size}",
        "slstm_at": list(cfg.slstm_at),
    }
    hf = {"max_ep_len": 1000, "max_length": cfg.context_timesteps, "n_layer": cfg.num_blocks,
          "hidden_size": cfg.embedding_dim, "n_head": cfg.num_heads, "xlstm_config": xcfg,
          "activation_function": "gelu", "n_positions": 1600}
    root = {
        "agent_params": {"kind": "MDDT", "batch_size": 128, "compile": True, "huggingface": hf,
                         "model_kwargs": {"state_dim": 204, "image_shape": [3, 64, 64], "action_channels": 256,
                                          "discrete_actions": 18, "use_time_embds": False},
                         "eval_context_len": "${agent_params.huggingface.max_length}"},
        "run_params": {"total_timesteps": 200000},
        "seed": 42,
    }
    for dotted, value in changes.items():  # e.g. {"agent_params.huggingface.n_layer": 9}
        node = root
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return root


def write_reference_zip(model: LRAM, path: str | Path, *, prefix: str = REFERENCE_PREFIX, cuda_layout: bool = True,
                        extra_keys: bool = True, hydra: bool | dict = True, drop: tuple = (),
                        policy_bytes: bytes | None = None) -> tuple[Path, Path | None]:
    """Write ``model`` as the reference training code would: ``model.zip`` with policy.pth (prefixed keys,
    CUDA-layout sLSTM kernels, unused extra keys) and the SB3 side files, plus a Hydra run directory's
    ``.hydra/config.yaml`` next to it. Returns (zip path, config.yaml path or None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cuda_layout:
        sd = _vanilla_to_cuda(model, sd)
    if extra_keys:
        H = model.config.embedding_dim
        g = torch.Generator().manual_seed(7)
        sd.update({k: torch.randn(shape(H), generator=g) for k, shape in UNUSED_EXTRA.items()})
    for k in drop:
        sd.pop(k)
    sd = {prefix + k: v for k, v in sd.items()}
    if policy_bytes is None:
        buf = io.BytesIO()
        torch.save(sd, buf)
        policy_bytes = buf.getvalue()
    opt = io.BytesIO()
    torch.save({"state": {}, "param_groups": [{"lr": 1e-4}]}, opt)
    pv = io.BytesIO()
    torch.save({}, pv)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data", json.dumps({"policy_class": "MultiDomainDiscreteDecisionXLSTMModel", "num_timesteps": 200000}))
        zf.writestr("pytorch_variables.pth", pv.getvalue())
        zf.writestr("policy.pth", policy_bytes)
        zf.writestr("optimizer.pth", opt.getvalue())
        zf.writestr("system_info.txt", "- OS: Linux\n- Python: 3.10\n- PyTorch: 2.3.0\n")
    yaml_path = None
    if hydra:
        cfg = hydra if isinstance(hydra, dict) else hydra_config_dict(model)
        yaml_path = path.parent / ".hydra" / "config.yaml"
        yaml_path.parent.mkdir(exist_ok=True)
        yaml_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        (yaml_path.parent / "overrides.yaml").write_text("- agent_params=multi_domain\n")
    return path, yaml_path


@pytest.fixture
def reference_zip_writer():
    return write_reference_zip


@pytest.fixture
def hydra_config():
    return hydra_config_dict
