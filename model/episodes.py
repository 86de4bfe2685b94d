"""Expert episodes on disk and the training windows made from them.

A data folder holds ``dataset.json`` (env id, seeds, summary) and one ``ep_<seed>.npz`` per episode with
``states`` [L, D] (s_0 .. s_{L-1}), ``actions`` [L, d] (already clipped to the task's bounds), ``rewards`` [L]
(r_t = reward of a_t), ``dones`` [L] (True at the last step), ``success`` (bool) and ``seed``.

Windows are C consecutive timesteps of one episode (C = 50 by default) with their returns-to-go
R_t = sum of r_t .. r_{L-1}; windows shorter than C (short episodes) are padded at the end and masked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .index_files import read_index

DATASET_FILE = "dataset.json"
DATASET_FORMAT = "lram-episodes"


class EpisodeError(ValueError):
    """A missing, empty or foreign episode folder / file."""


@dataclass
class Episode:
    states: np.ndarray  # [L, D] float32
    actions: np.ndarray  # [L, d] float32
    rewards: np.ndarray  # [L] float32
    dones: np.ndarray  # [L] bool
    success: bool
    seed: int

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """R_t = sum_{k >= t} r_k (float64 accumulation)."""
    return np.cumsum(np.asarray(rewards, dtype=np.float64)[::-1])[::-1].astype(np.float32)


def episode_path(folder: str | Path, seed: int) -> Path:
    return Path(folder) / f"ep_{int(seed):06d}.npz"


def save_episode(folder: str | Path, ep: Episode) -> Path:
    path = episode_path(folder, ep.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, states=ep.states.astype(np.float32), actions=ep.actions.astype(np.float32),
        rewards=ep.rewards.astype(np.float32), dones=ep.dones.astype(bool), success=np.bool_(ep.success),
        seed=np.int64(ep.seed),
    )
    return path


def load_episode(path: str | Path) -> Episode:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            ep = Episode(z["states"].astype(np.float32), z["actions"].astype(np.float32),
                         z["rewards"].astype(np.float32), z["dones"].astype(bool), bool(z["success"]), int(z["seed"]))
    except (OSError, ValueError, KeyError) as e:
        raise EpisodeError(f"{path} is not an episode file: {e}") from None
    L = len(ep.rewards)
    if L == 0 or ep.states.shape[0] != L or ep.actions.shape[0] != L or ep.dones.shape[0] != L:
        raise EpisodeError(f"{path}: inconsistent lengths (states {ep.states.shape}, actions {ep.actions.shape}, "
                           f"rewards {ep.rewards.shape})")
    return ep


def write_dataset_meta(folder: str | Path, meta: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / DATASET_FILE).write_text(json.dumps({"format": DATASET_FORMAT, **meta}, indent=2))


def read_dataset_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise EpisodeError(f"episode folder {folder} does not exist")
    return read_index(folder / DATASET_FILE, DATASET_FORMAT, EpisodeError,
                      f"{folder} is not an episode folder (no {DATASET_FILE}; make one with 'lram collect')",
                      "lram episode index")


def load_episodes(folder: str | Path) -> tuple[list[Episode], dict]:
    """All episodes of a folder (sorted by seed) and its dataset.json."""
    meta = read_dataset_meta(folder)
    files = sorted(Path(folder).glob("ep_*.npz"))
    if not files:
        raise EpisodeError(f"episode folder {folder} holds no ep_*.npz files")
    eps = [load_episode(f) for f in files]
    dims = {(e.states.shape[1:], e.actions.shape[1:]) for e in eps}
    if len(dims) != 1:
        raise EpisodeError(f"episodes in {folder} disagree on state/action shapes: {sorted(dims)}")
    return eps, meta


def collect(env_id: str, episodes: int, out: str | Path, seed0: int = 0, progress: bool = False) -> dict:
    """Run the scripted expert on seeds seed0 .. seed0 + episodes - 1 and write one file per episode."""
    from .envs import make_env
    from .experts import make_expert

    env, task = make_env(env_id, seed=seed0)
    expert = make_expert(env_id)
    seeds = list(range(seed0, seed0 + episodes))
    rets, succ, lens = [], [], []
    it = seeds
    if progress:
        from tqdm import tqdm
        it = tqdm(seeds, desc=f"collect {env_id}", unit="ep")
    for seed in it:
        obs = env.reset(seed)
        S, A, R, D = [], [], [], []
        while True:
            act = env.clip(expert(obs)).astype(np.float32)
            res = env.step(act)
            S.append(obs), A.append(act), R.append(res.reward), D.append(res.done)
            obs = res.obs
            if res.done:
                break
        ep = Episode(np.stack(S), np.stack(A), np.asarray(R, np.float32), np.asarray(D, bool), res.success, seed)
        save_episode(out, ep)
        rets.append(ep.ret), succ.append(ep.success), lens.append(len(ep))
    env.close()
    summary = {
        "env_id": env_id, "task": task.to_dict(), "seeds": [seeds[0], seeds[-1]], "episodes": episodes,
        "expert_success_rate": float(np.mean(succ)), "mean_return": float(np.mean(rets)),
        "mean_length": float(np.mean(lens)),
    }
    write_dataset_meta(out, summary)
    return summary


class WindowDataset:
    """All windows (episode, start) with start in 0 .. max(0, L - C); sampled with a torch.Generator."""

    def __init__(self, episodes: list[Episode], context: int = 50):
        if not episodes:
            raise EpisodeError("no episodes to make windows from")
        self.C = context
        self.obs = torch.from_numpy(np.concatenate([e.states for e in episodes]))
        self.actions = torch.from_numpy(np.concatenate([e.actions for e in episodes]))
        self.rewards = torch.from_numpy(np.concatenate([e.rewards for e in episodes]))
        self.rtg = torch.from_numpy(np.concatenate([returns_to_go(e.rewards) for e in episodes]))
        lens = np.array([len(e) for e in episodes])
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        starts, ends = [], []
        for off, L in zip(offsets, lens):
            for s in range(max(1, L - context + 1)):
                starts.append(off + s)
                ends.append(off + L)  # exclusive end of this window's episode
        self.starts = torch.tensor(starts, dtype=torch.long)
        self.ends = torch.tensor(ends, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx: torch.Tensor) -> dict:
        """Windows ``idx`` -> obs [B, C, D], rtg / rewards [B, C], actions [B, C, d], mask [B, C] bool."""
        pos = self.starts[idx, None] + torch.arange(self.C)
        end = self.ends[idx, None]
        mask = pos < end
        pos = torch.minimum(pos, end - 1)  # padded steps repeat the last one and are masked out
        zero = lambda t: torch.where(mask, t, torch.zeros_like(t))  # noqa: E731
        return {"obs": self.obs[pos] * mask[..., None], "rtg": zero(self.rtg[pos]), "rewards": zero(self.rewards[pos]),
                "actions": self.actions[pos], "mask": mask}

    def sample(self, batch_size: int, generator: torch.Generator) -> dict:
        return self.batch(torch.randint(len(self), (batch_size,), generator=generator))
