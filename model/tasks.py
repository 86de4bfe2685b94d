"""The tasks of the reference training code's six domains, and this project's own, by id: what a graph needs to
know about a task (observation kind and shape, action kind and size, reward scale, target return) without
importing any simulator.

Ids are ``<domain>:<task>``: ``metaworld:reach-v2`` (the reference code's names) and ``metaworld:reach-v3``
(the Meta-World release installed here), ``dmcontrol:cheetah-run``, ``atari:BreakoutNoFrameskip-v4``,
``procgen:bigfish``, ``composuite:IIWA_Box_None_PickPlace``, ``mimicgen:stack_d0``, ``gym:Pendulum-v1``.

Where the numbers come from (``TaskInfo.source`` says it per task):
- target returns of Meta-World (v2), Atari and DMControl: the reference code's own target table (twice the best
  return in its datasets for Meta-World); Meta-World v3 reuses the v2 value of the same task.
- Procgen: the "easy" R_max of the Procgen paper's normalisation table.
- shapes: the simulators' declared spaces (Meta-World 39 / 4, DMControl's flattened observation dict, ALE's
  minimal action sets, Procgen 15 actions); Atari frames are 64x64 grayscale, Procgen 64x64 RGB. The DMControl
  and Atari tables were checked against dm_control 1.0.28 and ale-py 0.12.1 (tests/model/test_tasks_and_decode.py
  repeats the check where those packages are installed). Composuite's 93 / 8 come from its paper, unchecked here.
- Composuite and Mimicgen have no target return here, and Mimicgen no observation size (it depends on the task
  and on the observation keys chosen in training): pass ``target_return`` / ``obs_dim`` where needed.
- reward scales: the spec's per-domain table (``config.REWARD_SCALES``).
A Hydra config of the run, where given, overrides the reward scale and the target return (lram.model.hydra_task).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .config import MAX_ACTION_DIMS, REWARD_SCALES, ConfigError, TaskSpec

DOMAINS = ("metaworld", "dmcontrol", "atari", "procgen", "composuite", "mimicgen", "gym")


class TaskError(ConfigError):
    """An unknown task id, or a task this model cannot serve."""


@dataclass(frozen=True)
class TaskInfo:
    id: str  # "<domain>:<task>"
    obs_kind: str  # "state" | "image"
    obs_shape: tuple | None  # None: not known without the simulator (pass obs_dim)
    action_kind: str  # "continuous" | "discrete"
    action_size: int  # continuous dims, or the number of discrete actions
    reward_scale: float
    target_return: float | None
    source: str  # where target return and shapes come from
    action_low: float = -1.0
    action_high: float = 1.0
    simulator: str | None = None  # the simulator id make_env runs for it, where this project has one

    @property
    def domain(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(":", 1)[1]

    def spec(self, action_decode: str = "bin_center", obs_dim: int | None = None,
             target_return: float | None = None, reward_scale: float | None = None) -> TaskSpec:
        """The TaskSpec a graph for this task is built with; the keyword values override the registry's."""
        shape = self.obs_shape
        if obs_dim is not None:
            if self.obs_kind != "state":
                raise TaskError(f"{self.id} observes images; obs_dim applies to state observations only")
            if shape is not None and shape != (obs_dim,):
                raise TaskError(f"{self.id} observes {shape[0]} dims, not {obs_dim}: drop --obs-dim")
            shape = (obs_dim,)
        if shape is None:
            raise TaskError(f"{self.id}: the observation size is not known without the simulator; pass --obs-dim N "
                            "(the length of the flattened low-dimensional observation the run was trained on)")
        continuous = self.action_kind == "continuous"
        d = self.action_size
        return TaskSpec(
            obs_kind=self.obs_kind, obs_shape=shape, action_kind=self.action_kind,
            action_dim=d if continuous else 0, action_low=(self.action_low,) * d if continuous else (),
            action_high=(self.action_high,) * d if continuous else (), action_n=0 if continuous else d,
            reward_scale=self.reward_scale if reward_scale is None else float(reward_scale),
            target_return=self.target_return if target_return is None else float(target_return),
            action_decode=action_decode, name=self.id,
        )


# ---- the tables ---------------------------------------------------------------------------------------------
# Meta-World MT50: task -> reference target return (v2 table).
_METAWORLD = {
    "assembly": 1285.642, "basketball": 1597.018, "bin-picking": 1308.598, "box-close": 1127.9013,
    "button-press": 1604.5227, "button-press-topdown": 1384.7, "button-press-topdown-wall": 1388.598,
    "button-press-wall": 1614.572, "coffee-button": 1698.32, "coffee-pull": 1475.0727, "coffee-push": 1694.6847,
    "dial-turn": 1887.328, "disassemble": 1536.4567, "door-close": 1587.8, "door-lock": 1831.5373,
    "door-open": 1608.812, "door-unlock": 1794.7213, "drawer-close": 1880.0, "drawer-open": 1762.81,
    "faucet-close": 1798.588, "faucet-open": 1783.7487, "hammer": 1724.842, "hand-insert": 1789.0467,
    "handle-press": 1929.8347, "handle-press-side": 1897.76, "handle-pull": 1759.07, "handle-pull-side": 1710.8367,
    "lever-pull": 1677.1973, "peg-insert-side": 1695.9867, "peg-unplug-side": 1619.82, "pick-out-of-hole": 1588.1173,
    "pick-place": 1300.692, "pick-place-wall": 1654.644, "plate-slide": 1713.0807, "plate-slide-back": 1806.1567,
    "plate-slide-back-side": 1833.7033, "plate-slide-side": 1748.304, "push": 1791.2247, "push-back": 1564.7233,
    "push-wall": 1746.7047, "reach": 1905.1067, "reach-wall": 1863.1053, "shelf-place": 1513.3307,
    "soccer": 1706.2247, "stick-pull": 1551.368, "stick-push": 1629.2633, "sweep": 1560.82, "sweep-into": 1815.9427,
    "window-close": 1559.3093, "window-open": 1717.4207,
}
# DMControl: task -> (flattened observation dims, action dims, reference target return). Tasks with more than
# 8 action dims (humanoid, quadruped, swimmer15) do not fit the shared action head and are left out.
_DMCONTROL = {
    "acrobot-swingup": (6, 1, 158.764), "ball_in_cup-catch": (8, 2, 1000.0), "cartpole-balance": (5, 1, 993.194),
    "cartpole-swingup": (5, 1, 857.492), "cheetah-run": (17, 6, 451.274), "finger-spin": (9, 2, 987.0),
    "finger-turn_easy": (12, 2, 1000.0), "finger-turn_hard": (12, 2, 1000.0), "fish-swim": (24, 5, 794.356),
    "fish-upright": (21, 5, 999.433), "hopper-hop": (15, 4, 116.777), "hopper-stand": (15, 4, 975.575),
    "manipulator-bring_ball": (44, 5, 19.022), "manipulator-insert_ball": (44, 5, 1000.0),
    "manipulator-insert_peg": (44, 5, 1000.0), "pendulum-swingup": (3, 1, 1000.0), "point_mass-easy": (4, 2, 998.373),
    "reacher-easy": (6, 2, 1000.0), "reacher-hard": (6, 2, 1000.0), "swimmer-swimmer6": (25, 5, 1000.0),
    "walker-run": (24, 6, 513.464), "walker-stand": (24, 6, 999.82), "walker-walk": (24, 6, 982.159),
}
# Atari (NoFrameskip-v4): game -> (minimal action set size, reference target return).
_ATARI = {
    "Alien": (18, 218.0), "Amidar": (10, 204.0), "Assault": (7, 160.0), "Asterix": (9, 104.0), "Atlantis": (4, 1444.0),
    "BankHeist": (18, 86.0), "BattleZone": (18, 32.0), "BeamRider": (9, 152.0), "Boxing": (18, 88.0),
    "Breakout": (4, 95.0), "Carnival": (6, 45.0), "Centipede": (18, 137.0), "ChopperCommand": (18, 70.0),
    "CrazyClimber": (9, 735.0), "DemonAttack": (6, 231.0), "DoubleDunk": (18, 14.0), "Enduro": (9, 1091.0),
    "FishingDerby": (18, 53.0), "Freeway": (3, 34.0), "Frostbite": (18, 71.0), "Gopher": (8, 627.0),
    "Gravitar": (18, 6.0), "Hero": (18, 201.0), "IceHockey": (18, 2.0), "Jamesbond": (18, 17.0),
    "Kangaroo": (18, 74.0), "Krull": (18, 741.0), "KungFuMaster": (14, 275.0), "MsPacman": (9, 403.0),
    "NameThisGame": (6, 640.0), "Phoenix": (8, 67.0), "Pong": (6, 21.0), "Pooyan": (6, 427.0), "Qbert": (6, 588.0),
    "Riverraid": (18, 250.0), "RoadRunner": (18, 217.0), "Robotank": (18, 73.0), "Seaquest": (18, 315.0),
    "SpaceInvaders": (6, 318.0), "StarGunner": (18, 261.0), "TimePilot": (10, 24.0), "UpNDown": (6, 246.0),
    "VideoPinball": (9, 1078.0), "WizardOfWor": (10, 46.0), "YarsRevenge": (18, 207.0), "Zaxxon": (18, 30.0),
}
# Procgen: game -> R_max ("easy" distribution) of the Procgen paper; 15 actions, 64x64 RGB.
_PROCGEN = {
    "bigfish": 40.0, "bossfight": 13.0, "caveflyer": 12.0, "chaser": 13.0, "climber": 12.6, "coinrun": 10.0,
    "dodgeball": 19.0, "fruitbot": 32.4, "heist": 10.0, "jumper": 10.0, "leaper": 10.0, "maze": 10.0,
    "miner": 13.0, "ninja": 10.0, "plunder": 30.0, "starpilot": 64.0,
}
# Composuite: robot x object x obstacle x objective; 93-dim state, 8 joint-velocity + gripper actions.
_COMPOSUITE = (("IIWA", "Jaco", "Kinova3", "Panda"), ("Box", "Dumbbell", "Plate", "Hollowbox"),
               ("None", "GoalWall", "ObjectDoor", "ObjectWall"), ("PickPlace", "Push", "Shelf", "Trashcan"))
# Mimicgen (robosuite, OSC pose + gripper = 7 actions): task -> its variants.
_MIMICGEN = {
    "coffee": 3, "coffee_preparation": 2, "hammer_cleanup": 2, "kitchen": 2, "mug_cleanup": 2, "nut_assembly": 1,
    "pick_place": 1, "square": 3, "stack": 2, "stack_three": 2, "threading": 3, "three_piece_assembly": 3,
}
_REF_TABLE = "the reference code's target table"


def _build() -> dict:
    tasks: dict[str, TaskInfo] = {}

    def add(info: TaskInfo):
        tasks[info.id] = info

    for name, target in _METAWORLD.items():
        for v in ("v2", "v3"):
            src = _REF_TABLE if v == "v2" else f"{_REF_TABLE} (its {name}-v2 value)"
            add(TaskInfo(f"metaworld:{name}-{v}", "state", (39,), "continuous", 4, REWARD_SCALES["metaworld"], target,
                         src, simulator=f"metaworld:{name}-v3" if v == "v3" else None))
    for name, (obs, act, target) in _DMCONTROL.items():
        add(TaskInfo(f"dmcontrol:{name}", "state", (obs,), "continuous", act, REWARD_SCALES["dmcontrol"], target,
                     _REF_TABLE))
    for game, (n, target) in _ATARI.items():
        add(TaskInfo(f"atari:{game}NoFrameskip-v4", "image", (64, 64, 1), "discrete", n, REWARD_SCALES["atari"], target,
                     _REF_TABLE))
    for game, target in _PROCGEN.items():
        add(TaskInfo(f"procgen:{game}", "image", (64, 64, 3), "discrete", 15, REWARD_SCALES["procgen"], target,
                     "the Procgen paper's R_max (easy)"))
    for robot in _COMPOSUITE[0]:
        for obj in _COMPOSUITE[1]:
            for obstacle in _COMPOSUITE[2]:
                for objective in _COMPOSUITE[3]:
                    add(TaskInfo(f"composuite:{robot}_{obj}_{obstacle}_{objective}", "state", (93,), "continuous", 8,
                                 REWARD_SCALES["composuite"], None,
                                 "no target return known: pass one; 93 / 8 from the Composuite paper"))
    for name, variants in _MIMICGEN.items():
        for d in range(variants):
            add(TaskInfo(f"mimicgen:{name}_d{d}", "state", None, "continuous", 7, REWARD_SCALES["mimicgen"], None,
                         "no target return or observation size known: pass them"))
    # This project's own simulator task (not a reference-code task).
    add(TaskInfo("gym:Pendulum-v1", "state", (3,), "continuous", 1, 100.0, None, "gymnasium's Pendulum-v1",
                 action_low=-2.0, action_high=2.0, simulator="gym:Pendulum-v1"))
    bad = [t.id for t in tasks.values() if t.action_kind == "continuous" and t.action_size > MAX_ACTION_DIMS]
    assert not bad, bad
    return tasks


TASKS: dict[str, TaskInfo] = _build()


def lookup(task_id: str) -> TaskInfo:
    """The registry entry of ``task_id``; an unknown id raises a one-line TaskError with the nearest ids."""
    if task_id in TASKS:
        return TASKS[task_id]
    domain, sep, name = str(task_id).partition(":")
    if not sep:
        hits = [t for t in TASKS if t.split(":", 1)[1] == task_id]
        hint = f"; did you mean {' or '.join(hits)}?" if hits else ""
        raise TaskError(f"task id {task_id!r} must look like DOMAIN:TASK (domains: {', '.join(DOMAINS)}){hint}")
    if domain not in DOMAINS:
        raise TaskError(f"unknown domain {domain!r} in {task_id!r}; domains: {', '.join(DOMAINS)}")
    same = [t for t in TASKS if t.startswith(domain + ":")]
    near = difflib.get_close_matches(task_id, same, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(near)}?" if near else f"e.g. {', '.join(same[:3])}"
    raise TaskError(f"unknown {domain} task {name!r} ({len(same)} known; {hint})")


def task_spec(task_id: str, action_decode: str = "bin_center", **overrides) -> TaskSpec:
    """``lookup(task_id).spec(...)``: the TaskSpec of a registry task, without a simulator."""
    return lookup(task_id).spec(action_decode, **overrides)

