"""Fitting the chunk critic: `critic_loss` (the chunked TD target, inline) and `fit_critic` (the loop).

One step: draw B chunk starts from the training episodes (a stateless RNG keyed by
(seed, rank, step), so a resumed run draws the same batches), build their chunks and TD
parts by indexing precomputed per-frame arrays, compute the target under no_grad with the
target networks, take an AdamW step on the per-head loss, and Polyak-average the target
networks. Under torchrun the online network is wrapped in DistributedDataParallel and each
process trains on its own share of the training episodes.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import chunks as C
from .. import schema as S
from ..errors import BadInput
from ..memory import keep_freed_memory
from ..outdirs import check_output
from ..rewards import RewardSpec, resolve_rewards, typical_lengths
from ..store import Store
from .config import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SAMPLES_FILE, SAMPLES_META, WEIGHTS_FILE,
                     CriticConfig)
from .data import ChunkData, PolicySamples, fill_policy_samples, load_chunk_data

CRITIC_FORMAT = "aloe-critic"
CRITIC_VERSION = 1
VAL_CHUNKS = 4096  # validation chunks (fixed by the seed)
# Fields that may change between a run and its --resume.
RESUMABLE_CHANGES = ("steps", "val_every", "log_every", "checkpoint_every", "device")


# --------------------------------------------------------------------------- the loss
def critic_loss(net, target_net, batch: dict, config: CriticConfig):
    """Per-head TD loss on one batch. Returns (loss, info): info maps namespaced keys to 0-d tensors.

    batch: state (B, D), chunk (B, 1, H, A) (padded with its last action), R, disc, m, rtg (B,),
    next_state (B, D), next_chunks (B, K, H, A).
    """
    import torch

    from .net import aggregate, hl_gauss_probs

    module = getattr(net, "module", net)  # DistributedDataParallel wraps the network
    with torch.no_grad():
        if config.bootstrap == "mc":
            y = batch["rtg"]  # Monte-Carlo regression: the discounted return-to-go
        else:
            # y = R + gamma^h * m * mean_k agg_m Qbar_m(o', a'_k)
            q_next = target_net.q_heads(batch["next_state"], batch["next_chunks"], batch.get("next_images"))
            v_next = aggregate(q_next, config.aggregate, config.std_coef).mean(1)
            y = batch["R"] + batch["disc"] * batch["m"] * v_next
        y_n = module.normalize_value(y)
    raw = net(batch["state"], batch["chunk"], batch.get("images"))[:, 0]  # (B, M, out)
    if config.head == "hlgauss":
        lo, hi = module.support_bounds()
        target = hl_gauss_probs(y_n, lo, hi, module.out_dim)  # (B, bins)
        per_head = -(target[:, None] * torch.log_softmax(raw, -1)).sum(-1)  # (B, M) cross-entropy
    else:
        per_head = (raw[..., 0] - y_n[:, None]) ** 2  # (B, M)
    loss = per_head.mean(0).sum()  # every head gets the full gradient of its own loss
    with torch.no_grad():
        q = module.values(raw)  # (B, M) in reward units
        info = {  # 0-d tensors on the batch's device: read on the host once per logged row, not per step
            "critic/loss": loss.detach(),
            "critic/td_mse": ((q - y[:, None]) ** 2).mean(),
            "critic/q_mean": q.mean(),
            "critic/q_head_std": q.std(-1, unbiased=False).mean(),
            "critic/target_mean": y.mean(),
        }
    return loss, info


def host_floats(window: dict) -> dict[str, list[float]]:
    """A metrics window {key: [0-d tensor or float]} as Python floats, read from the device in one transfer."""
    import torch

    pending = [x for v in window.values() for x in v if not isinstance(x, float)]
    read = iter(torch.stack(pending).tolist() if pending else [])
    return {k: [x if isinstance(x, float) else next(read) for x in v] for k, v in window.items()}


# --------------------------------------------------------------------------- batches
class Batcher:
    """Builds batches for chunk starts `idx` from a ChunkData (and the policy cache)."""

    def __init__(self, data: ChunkData, config: CriticConfig, samples: PolicySamples | None, device):
        import torch

        self.data, self.config, self.samples, self.device = data, config, samples, device
        t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dt)  # noqa
        self.state = t(data.features)  # the state and any --obs extra columns
        # Cameras: the decoded uint8 frames as tensors (no copy on CPU), indexed per batch.
        self.images = {c: torch.as_tensor(a).to(device) for c, a in (data.images or {}).items()}
        self.action = t(data.action)
        self.R, self.disc, self.m = t(data.R), t(data.disc), t(data.m)
        self.rtg = t(data.rtg)
        self.cache = None
        if samples is not None and cache_on_device(samples.array, device):
            self.cache = to_device_blockwise(samples.array, device)
            self.rows = t(np.maximum(samples.rows, 0), torch.int64)

    def __call__(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        """The batch for chunk starts `idx`. With `rng` (training), half of the chunks that run
        past a terminal frame get their padding replaced by actions from random frames."""
        import torch

        d, H = self.data, self.data.H
        end = d.end[idx]
        win, valid = C.chunk_windows(idx, end, H)
        if rng is not None:
            win = C.fill_past_end(win, valid, d.terminated[idx], rng.integers(0, d.num_frames, size=win.shape),
                                  rng.random(len(idx)) < 0.5)
        ti = lambda a: torch.as_tensor(a, device=self.device)  # noqa: E731
        idx_t, boot = ti(idx), d.boot[idx]
        batch = {
            "state": self.state[idx_t],
            "chunk": self.action[ti(win)][:, None],
            "R": self.R[idx_t], "disc": self.disc[idx_t], "m": self.m[idx_t], "rtg": self.rtg[idx_t],
            "next_state": self.state[ti(boot)],
        }
        if self.images:
            batch["images"] = self._frames(idx_t, rng)
            batch["next_images"] = self._frames(ti(boot), rng)
        if self.config.bootstrap == "data":
            nwin, _ = C.chunk_windows(boot, end, H)
            batch["next_chunks"] = self.action[ti(nwin)][:, None]
        elif self.config.bootstrap == "policy":
            has = d.m[idx] > 0  # terminal chunks need no next value (m = 0): zeros stand in
            if self.cache is not None:
                rows = self.rows[ti(boot)]
                nxt = self.cache[rows] * ti(has)[:, None, None, None].to(self.cache.dtype)
            else:
                arr = np.zeros((len(idx),) + self.samples.array.shape[1:], dtype=np.float32)
                arr[has] = self.samples.get(boot[has])
                nxt = ti(arr)
            batch["next_chunks"] = nxt
        return batch


    def _frames(self, idx_t, rng: np.random.Generator | None) -> dict:
        """Camera frames at `idx_t`; random-shifted in training (`rng` given and config.augment)."""
        import torch

        from ..vision import random_shift

        out = {}
        for c, a in self.images.items():
            x = a[idx_t]
            if rng is not None and self.config.augment:
                g = torch.Generator(device=x.device).manual_seed(int(rng.integers(0, 2 ** 62)))
                x = random_shift(x, generator=g)
            out[c] = x
        return out


GPU_CACHE_SHARE = 0.5  # a memory-mapped sample cache is copied to a GPU whose free memory is twice its size


def cache_on_device(array: np.ndarray, device, free_bytes: int | None = None) -> bool:
    """Whether the policy-sample cache is held on `device` as one tensor (each batch gathers its rows there)
    or stays a memory map (each batch reads its rows on the host and copies them over). An in-RAM cache always
    is; a memory-mapped one (over $ALOE_SAMPLES_RAM_MB) only on a GPU with room for it: there it is copied
    once instead of every step. `free_bytes`: the GPU's free memory (read from the device if None)."""
    if not isinstance(array, np.memmap):
        return True
    if getattr(device, "type", str(device)) != "cuda":
        return False
    if free_bytes is None:
        import torch

        free_bytes, _ = torch.cuda.mem_get_info(device)
    return array.nbytes <= GPU_CACHE_SHARE * free_bytes


def to_device_blockwise(array: np.ndarray, device, block_bytes: int = 256 << 20):
    """`array` as a float32 tensor on `device`, copied a block of rows at a time: a memory-mapped array is
    never read into host memory whole."""
    import torch

    if not isinstance(array, np.memmap):
        return torch.as_tensor(np.ascontiguousarray(array)).to(device=device, dtype=torch.float32)
    out = torch.empty(array.shape, dtype=torch.float32, device=device)
    step = max(1, block_bytes // max(1, array[:1].nbytes))
    for i in range(0, len(array), step):
        out[i:i + step] = torch.from_numpy(np.ascontiguousarray(array[i:i + step], dtype=np.float32))
    return out


# --------------------------------------------------------------------------- helpers
class _Dist:
    """torchrun's environment: rank, world size, and the process group when there is one."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False

    def init(self, use_cuda: bool) -> None:
        import torch
        import torch.distributed as dist

        if use_cuda:
            torch.cuda.set_device(self.local_rank)
        if self.world > 1 and not dist.is_initialized():
            if use_cuda:  # device_id binds the group to this GPU (no guessing of the rank -> GPU map)
                dist.init_process_group("nccl", device_id=torch.device("cuda", self.local_rank))
            else:
                dist.init_process_group("gloo")
            self.owned = True

    def mean(self, values: dict[str, float], device) -> dict[str, float]:
        """`values` averaged over the processes (each has trained as many steps on its own batches)."""
        if self.world == 1 or not values:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0):
    """The torch device for --device: the policy's device names (auto | cpu | cuda | cuda:N, anything
    else refused); plain cuda is the local rank's GPU under torchrun."""
    import torch

    from ..policy.builtin import resolve_device as checked_name

    name = checked_name(name)
    if name == "cpu":
        return torch.device("cpu")
    return torch.device(name) if ":" in name else torch.device("cuda", local_rank)


def select_episodes(store: Store, expr: str | None):
    eps = store.episodes
    if expr:
        try:
            eps = eps.query(expr)
        except Exception as e:  # pandas raises many types for a bad expression
            raise BadInput(f"cannot be evaluated: {type(e).__name__}: {e}", field="--episodes-filter") from None
        if len(eps) == 0:
            raise BadInput(f"{expr!r} selects no episode of {len(store.episodes)}", field="--episodes-filter")
    if len(eps) == 0:
        raise BadInput("the store has no episodes to fit on", store.root, S.EPISODE_ID)
    return eps.reset_index(drop=True)


def _adamw(params, lr: float, weight_decay: float):
    """AdamW, fused where this torch supports it (on CPU from torch 2.4; ~15% faster steps here)."""
    import torch

    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _polyak(target, net, tau: float) -> None:
    import torch

    with torch.no_grad():
        tp, np_ = list(target.parameters()), list(net.parameters())
        torch._foreach_lerp_(tp, np_, tau)


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _crashpoint(step: int) -> None:
    """Fault injection for the resume test: ALOE_CRASH_AT=critic-step-N kills the process after step N."""
    if os.environ.get("ALOE_CRASH_AT") == f"critic-step-{step}":
        os._exit(137)


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0).astype(np.float32)
    std = x.std(0).astype(np.float32)
    return mean, np.where(std > 1e-6, std, 1.0).astype(np.float32)


EDGE_BINS = 3  # HL-Gauss bins beyond a bound values cannot pass (4 sigma), so a target at the bound decodes to itself


def value_support(reward: dict, rtg: np.ndarray, bins: int = 101) -> tuple[float, float]:
    """The value range the HL-Gauss head can represent, in reward units: the logged returns'
    range widened by a quarter of its width on each side. Step-penalty values never exceed 0 and
    sparse values lie in [0, 1]; there the support runs EDGE_BINS bins past the bound, because a
    support that ended at the bound would decode a target there (a success) about a bin short of it."""
    lo, hi = float(rtg.min()), float(rtg.max())
    pad = 0.25 * max(hi - lo, 1e-3)
    lo, hi = lo - pad, hi + pad
    edge = EDGE_BINS if bins > 4 * EDGE_BINS else 0
    if reward["kind"] == "step-penalty":
        lo = min(lo, -1e-3)
        hi = edge * -lo / (bins - edge)
    if reward["kind"] == "sparse":
        width = 1.0 / (bins - 2 * edge)
        lo, hi = -edge * width, 1.0 + edge * width
    return lo, hi


# --------------------------------------------------------------------------- fitting
def fit_critic(store: Store | str | os.PathLike, out_dir: str | os.PathLike, config: CriticConfig,
               policy_spec: str | None = None, policy_args: dict | None = None,
               progress: Callable | None = None, resume: bool = False) -> dict:
    """Fit a chunk critic on the store's episodes; write CONFIG_FILE, WEIGHTS_FILE and METRICS_FILE
    into `out_dir`. Returns a summary dict. `progress(phase, done, total, info)` is called as it goes.

    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 writes the files.
    """
    import torch

    from ..policy import check_against_store, close_policy, load_policy
    from .net import CriticNet

    config.check()
    dist = _Dist()
    device = resolve_device(config.device, dist.local_rank)
    if dist.world > 1 and device.index is not None and device.index != dist.local_rank:
        raise BadInput(f"under torchrun each process takes its LOCAL_RANK's GPU; got {config.device!r}, use cuda",
                       field="--device")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the policy loads: a plugin's .to("cuda") lands on this GPU
    store = store if isinstance(store, Store) else Store.open(store)
    out_dir = Path(out_dir)
    episodes = select_episodes(store, config.episodes_filter)

    # ---- the policy and the chunk size
    policy = None
    if config.bootstrap == "policy" and not policy_spec:
        raise BadInput("--bootstrap policy needs the policy being evaluated", field="--policy")
    if policy_spec:
        policy = load_policy(policy_spec, policy_args, device=str(device))
        check_against_store(policy, store.action_dim, policy_spec)
    H = config.chunk_size or (int(policy.chunk_size) if policy is not None else None)
    if H is None:
        raise BadInput("give --chunk-size (or a --policy to take it from)", field="--chunk-size")
    if policy is not None and int(policy.chunk_size) < H:
        raise BadInput(f"{H} is longer than the policy's chunks ({policy.chunk_size} actions)", field="--chunk-size")
    longest = int(episodes[S.LENGTH].max())
    if H >= longest:
        raise BadInput(f"{H} leaves no chunk with a next observation: the longest episode has {longest} frames; "
                       f"use a chunk size below {longest}", field="--chunk-size")
    reward = resolve_rewards(RewardSpec(config.reward, config.t_norm, config.c_fail), episodes, str(store.root))
    resolved = config.__class__(**{**config.to_dict(), "chunk_size": H})

    # ---- the output directory (nothing is written before the input is checked)
    ckpt_path = out_dir / CHECKPOINT_FILE
    check_output(out_dir, "critic", "--out")
    if not resume and out_dir.exists() and any((out_dir / f).exists() for f in (CONFIG_FILE, CHECKPOINT_FILE)):
        raise BadInput("already holds a critic; pass --resume to continue it or choose another --out",
                       out_dir, "--out")

    from ..vision import parse_obs

    time_scale = None
    if parse_obs(config.obs).time:
        per_task, default = typical_lengths(episodes)
        time_scale = {"per_task": per_task, "default": default}
    data = load_chunk_data(store, episodes, H, config.gamma, reward, config.obs, time_scale)
    features = data.features

    # ---- split: validation episodes, then this process's share of the training episodes
    E = len(episodes)
    perm = np.random.default_rng([config.seed, 7]).permutation(E)
    n_val = int(round(config.val_fraction * E)) if E >= 2 else 0
    n_val = max(n_val, 1) if (config.val_fraction > 0 and E >= 2) else n_val
    val_eps, train_eps = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train_all = data.frames_of_episodes(train_eps)
    mine = data.frames_of_episodes(train_eps[dist.rank::dist.world])
    if config.bootstrap != "mc":
        mine = mine[data.usable[mine]]
    if len(mine) == 0:
        raise BadInput("no chunk of the training episodes can be a TD target (every episode is truncated "
                       f"within {H} frames of its start)", store.root, "--chunk-size")
    val = data.frames_of_episodes(val_eps)
    if config.bootstrap != "mc":
        val = val[data.usable[val]]
    if len(val) > VAL_CHUNKS:
        val = np.sort(np.random.default_rng([config.seed, 11]).choice(val, VAL_CHUNKS, replace=False))
    first_frames = data.starts  # V at every episode's first frame: the estimate tracked while training

    s_mean, s_std = _stats(features[train_all])
    a_mean, a_std = _stats(data.action[train_all])
    rtg_train = data.rtg[train_all]
    shift = float(rtg_train.mean()) if config.normalize_returns else 0.0
    scale = float(max(rtg_train.std(), 1e-3)) if config.normalize_returns else 1.0
    lo, hi = value_support(reward, rtg_train, config.bins)
    support_n = ((lo - shift) / scale, (hi - shift) / scale)

    meta = {
        "format": CRITIC_FORMAT,
        "version": CRITIC_VERSION,
        "config": resolved.to_dict(),
        "policy": None if policy is None else {
            "spec": policy_spec, "args": dict(policy_args or {}), "chunk_size": int(policy.chunk_size),
            "action_dim": int(policy.action_dim)},
        "reward": reward,
        "chunk_size": H,
        "state_dim": int(data.state.shape[1]),
        "obs_dim": int(features.shape[1]),  # the state plus the --obs extra columns (and time)
        "time_scale": time_scale,  # --obs time: frames per unit of the time input, per task
        "images": {c: list(a.shape[1:3]) for c, a in (data.images or {}).items()},  # camera -> [h, w]
        "action_dim": int(data.action.shape[1]),
        "normalization": {"state_mean": s_mean.tolist(), "state_std": s_std.tolist(),
                          "action_mean": a_mean.tolist(), "action_std": a_std.tolist(),
                          "return_shift": shift, "return_scale": scale},
        "value_support": [lo, hi],
        "store": {"path": str(store.root), "fingerprint": store.fingerprint, "labels": store.labels_fingerprint,
                  "episodes": E,
                  "frames": data.num_frames, "train_episodes": int(len(train_eps)),
                  "val_episodes": int(len(val_eps)), "val_episode_ids": episodes[S.EPISODE_ID].iloc[val_eps].tolist()},
        "world_size": dist.world,
    }

    # ---- resume: the checkpoint must come from the same run
    ckpt = None
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        old = {k: v for k, v in ckpt["meta"].items() if k != "config"}
        new = {k: v for k, v in meta.items() if k != "config"}
        if "labels" not in old.get("store", {}):  # a checkpoint from before the labels were recorded
            new["store"] = {k: v for k, v in new["store"].items() if k != "labels"}
        oc = {k: v for k, v in ckpt["meta"]["config"].items() if k not in RESUMABLE_CHANGES}
        nc = {k: v for k, v in meta["config"].items() if k not in RESUMABLE_CHANGES}
        diff = [k for k in sorted(set(oc) | set(nc)) if oc.get(k) != nc.get(k)]
        # The store first: changed episodes or labels change the statistics too; name the cause, not those.
        os_, ns = old.get("store") or {}, new.get("store") or {}
        diff += [why for k, why in (("fingerprint", "store: its episodes changed since"),
                                    ("labels", "labelling: the store's success or policy_id labels changed since"))
                 if os_.get(k) != ns.get(k)]
        diff += [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            raise BadInput(f"the checkpoint was made with a different {diff[0]}; resume with the same options and "
                           "store, or choose another --out", ckpt_path, "--resume")

    dist.init(device.type == "cuda")
    try:
        if dist.rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()

        # ---- the policy's chunks at every bootstrap frame, drawn once
        samples = None
        if config.bootstrap == "policy" or policy is not None:
            frames = [first_frames]
            if config.bootstrap == "policy":
                frames.append(data.boot[mine][data.m[mine] > 0])
                if dist.rank == 0:
                    frames.append(data.boot[val][data.m[val] > 0])
            samples = fill_policy_samples(
                policy, policy_spec, data, np.concatenate(frames), config.samples, H,
                out_dir / SAMPLES_FILE.format(rank=dist.rank), out_dir / SAMPLES_META.format(rank=dist.rank),
                config.seed + 1000 * dist.rank, progress if dist.rank == 0 else None)
        if policy is not None:
            close_policy(policy)  # its chunks are all drawn

        # ---- networks
        torch.manual_seed(config.seed)
        net = CriticNet(meta["obs_dim"], meta["action_dim"], H, config.ensemble, config.hidden, config.layers,
                        config.head, config.bins, config.chunk_encoder, support_n, images=meta["images"])
        with torch.no_grad():
            for name, value in (("state_mean", s_mean), ("state_std", s_std), ("action_mean", a_mean),
                                ("action_std", a_std)):
                getattr(net, name).copy_(torch.as_tensor(value))
            net.ret_shift.fill_(shift)
            net.ret_scale.fill_(scale)
        net.to(device)
        target = copy.deepcopy(net).requires_grad_(False)
        opt = _adamw(net.parameters(), config.lr, config.weight_decay)
        step = 0
        metrics_path = out_dir / METRICS_FILE
        metrics_offset = 0
        if ckpt is not None:
            net.load_state_dict(ckpt["net"])
            target.load_state_dict(ckpt["target"])
            opt.load_state_dict(ckpt["opt"])
            step, metrics_offset = int(ckpt["step"]), int(ckpt["metrics_offset"])
        if dist.rank == 0:
            with open(metrics_path, "a+b") as f:  # drop lines logged after the checkpoint
                f.truncate(metrics_offset)
        model = net
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

        batcher = Batcher(data, config, samples, device)
        local_batch = max(1, config.batch_size // dist.world)

        def evaluate() -> dict:
            """Validation metrics of the target (Polyak-averaged) networks: the weights saved and scored."""
            out = {}
            with torch.no_grad():
                if len(val):
                    parts = [(critic_loss(target, target, batcher(val[i:i + 1024]), config)[1]["critic/td_mse"],
                              len(val[i:i + 1024])) for i in range(0, len(val), 1024)]
                    mses = host_floats({"mse": [m for m, _ in parts]})["mse"]
                    out["val/td_mse"] = sum(m * k for m, (_, k) in zip(mses, parts)) / len(val)
                out.update(_start_values(target, batcher, first_frames, samples, config))
            return out

        # ---- the loop
        keep_freed_memory()  # no page faults for the step's buffers (aloe_cli.memory)
        t0, c0, s0 = time.perf_counter(), time.process_time(), step
        # The metrics since the last logged row: in the checkpoint, so a resumed run logs the rows an
        # uninterrupted one would (a checkpoint between two log steps).
        window: dict[str, list[float]] = dict(ckpt.get("window") or {}) if ckpt is not None else {}
        last: dict = {}
        metrics_f = open(metrics_path, "a") if dist.rank == 0 else None
        try:
            while step < config.steps:
                rng = np.random.default_rng([config.seed, dist.rank, step])
                idx = mine[rng.integers(0, len(mine), size=local_batch)]
                loss, info = critic_loss(model, target, batcher(idx, rng), config)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _polyak(target, net, config.tau)
                step += 1
                for k, v in info.items():
                    window.setdefault(k, []).append(v)
                if step % config.log_every == 0 or step == config.steps or step % config.val_every == 0:
                    means = dist.mean({k: float(np.mean(v)) for k, v in host_floats(window).items()}, device)
                    rate = (step - s0) * config.batch_size / max(time.perf_counter() - t0, 1e-9)
                    row = {"step": step, **means, "time/samples_per_s": rate, "time/cpu_s": time.process_time() - c0}
                    window = {}
                    if dist.rank == 0 and (step % config.val_every == 0 or step == config.steps):
                        row.update(evaluate())  # rank 0 alone holds policy samples at the validation frames
                    last = row
                    if metrics_f is not None:
                        metrics_f.write(json.dumps(row) + "\n")
                        metrics_f.flush()
                if progress is not None and dist.rank == 0:
                    progress("train", step, config.steps, last)
                if step % config.checkpoint_every == 0 and step < config.steps and dist.rank == 0:
                    buf = _checkpoint_bytes(step, net, target, opt, meta, metrics_path.stat().st_size, window)
                    _atomic_bytes(ckpt_path, buf)
                _crashpoint(step)
        finally:
            if metrics_f is not None:
                metrics_f.close()
        seconds = time.perf_counter() - t0

        # ---- the artifacts: the target networks' (Polyak-averaged) weights, the config, a checkpoint
        if dist.rank == 0:
            from safetensors.torch import save_file

            final = evaluate()
            tmp = out_dir / (WEIGHTS_FILE + ".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in target.state_dict().items()}, str(tmp))
            os.replace(tmp, out_dir / WEIGHTS_FILE)
            _atomic_bytes(ckpt_path, _checkpoint_bytes(step, net, target, opt, meta, metrics_path.stat().st_size))
            meta["result"] = {"steps": step, "seconds": round(seconds, 3), **final,
                              **{k: v for k, v in last.items() if k.startswith("critic/")}}
            _atomic_bytes(out_dir / CONFIG_FILE, json.dumps(meta, indent=2).encode())
        dist.barrier()
        for name in (SAMPLES_FILE, SAMPLES_META):
            (out_dir / name.format(rank=dist.rank)).unlink(missing_ok=True)
    finally:
        dist.close()
    return {
        "out": str(out_dir),
        "steps": step,
        "bootstrap": config.bootstrap,
        "chunk_size": H,
        "episodes": E,
        "frames": data.num_frames,
        "train_chunks": int(len(mine)) * dist.world,
        "val_chunks": int(len(val)),
        "seconds": round(seconds, 3),
        "samples_per_s": round((step - s0) * config.batch_size / max(seconds, 1e-9), 1),
        **{k: v for k, v in (meta.get("result") or last).items() if "/" in k},
    }


def _checkpoint_bytes(step, net, target, opt, meta, metrics_offset, window=None) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"step": step, "net": net.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                "meta": meta, "metrics_offset": metrics_offset, "window": host_floats(window or {})}, buf)
    return buf.getvalue()


def _start_values(net, batcher: Batcher, first_frames: np.ndarray, samples: PolicySamples | None,
                  config: CriticConfig) -> dict:
    """Mean over episodes of V^pi(o_0) (with a policy) and of Q(o_0, logged first chunk)."""
    import torch

    from .net import aggregate

    d = batcher.data
    out = {}
    win, _ = C.chunk_windows(first_frames, d.end[first_frames], d.H)
    ff = torch.as_tensor(first_frames, device=batcher.device)
    st = batcher.state[ff]
    im = batcher._frames(ff, None) if batcher.images else None
    q = net.q_heads(st, batcher.action[torch.as_tensor(win, device=batcher.device)][:, None], im)
    out["val/q_start"] = float(aggregate(q, config.aggregate, config.std_coef).mean())
    if samples is not None:
        ch = torch.as_tensor(samples.get(first_frames), device=batcher.device)
        qv = net.q_heads(st, ch, im)
        out["val/v_start"] = float(aggregate(qv, config.aggregate, config.std_coef).mean(1).mean())
    return out

