"""Write robomimic and Minari datasets exactly as those tools write them (no robomimic/minari needed).

robomimic: ARISE-Initiative/robomimic scripts/dataset_states_to_obs.py (write_traj_to_file),
utils/file_utils.py (create_hdf5_filter_key), envs/env_robosuite.py (serialize).
Minari: Farama-Foundation/Minari minari/dataset/minari_storage.py (new, update_metadata),
_storages/hdf5_storage.py (update_episodes, _add_episode_to_group, encode_frame),
_storages/arrow_storage.py (update_episodes, _encode_space), serialization.py (serialize_space),
data_collector/callbacks/episode_metadata.py, utils.py (_generate_dataset_metadata).
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------------------------ robomimic

LOW_DIM = OrderedDict([("robot0_eef_pos", 3), ("robot0_eef_quat", 4), ("robot0_gripper_qpos", 2), ("object", 10)])


def robomimic_env_args(env_name: str = "Lift", reward_shaping: bool = False, camera_names=("agentview",),
                       hw: int = 84) -> dict:
    """What EnvRobosuite.serialize() returns: env_name, env_version, type, env_kwargs."""
    return {
        "env_name": env_name,
        "env_version": "1.4.1",
        "type": 1,
        "env_kwargs": {
            "has_renderer": False,
            "has_offscreen_renderer": True,
            "ignore_done": True,
            "use_object_obs": True,
            "use_camera_obs": True,
            "control_freq": 20,
            "controller_configs": {"type": "OSC_POSE", "input_max": 1, "input_min": -1,
                                   "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
                                   "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5],
                                   "kp": 150, "damping": 1, "impedance_mode": "fixed",
                                   "kp_limits": [0, 300], "damping_limits": [0, 10],
                                   "position_limits": None, "orientation_limits": None,
                                   "uncouple_pos_ori": True, "control_delta": True,
                                   "interpolation": None, "ramp_ratio": 0.2},
            "robots": ["Panda"],
            "camera_depths": False,
            "camera_heights": hw,
            "camera_widths": hw,
            "reward_shaping": reward_shaping,
            "camera_names": list(camera_names),
        },
    }


def write_robomimic(path: Path, lengths=(6, 5, 7), seed: int = 0, first_id: int = 1, cameras=(),
                    image_hw: int = 12, compress: bool = False, exclude_next_obs: bool = False,
                    success=None, done_mode: int = 2, env_name: str = "Lift", reward_shaping: bool = False,
                    masks: dict | None = None, rewards: bool = True) -> dict:
    """One robomimic hdf5 as dataset_states_to_obs.py writes it; returns the arrays per demo name.

    `success[i]` (default all True) decides whether demo i ends in a success state: the sparse
    reward r(s') is 1 there (with shaping, partial credit < 1 elsewhere).
    """
    import h5py

    rng = np.random.default_rng(seed)
    success = [True] * len(lengths) if success is None else list(success)
    written = {}
    total = 0
    with h5py.File(path, "w") as f_out:
        data_grp = f_out.create_group("data")
        for i, T in enumerate(lengths):
            ep = f"demo_{first_id + i}"
            obs = {k: rng.normal(size=(T + 1, w)) for k, w in LOW_DIM.items()}
            for cam in cameras:
                obs[f"{cam}_image"] = rng.integers(0, 255, size=(T + 1, image_hw, image_hw, 3), dtype=np.uint8)
            traj_obs = {k: v[:T] for k, v in obs.items()}
            traj_next = {k: v[1:] for k, v in obs.items()}
            if reward_shaping:
                r = rng.uniform(0.0, 0.9, size=T)
            else:
                r = np.zeros(T)
            if success[i] and T:
                r[-1] = 1.0
            is_success = np.zeros(T, dtype=bool)
            if success[i] and T:
                is_success[-1] = True
            dones = np.zeros(T, dtype=bool)
            if done_mode in (1, 2) and T:
                dones[-1] = True
            if done_mode in (0, 2):
                dones |= is_success
            traj = {
                "actions": rng.uniform(-1, 1, size=(T, 7)),
                "states": rng.normal(size=(T, 32)),
                "rewards": r,
                "dones": dones.astype(int),
                "obs": traj_obs,
                "next_obs": traj_next,
            }
            ep_data_grp = data_grp.create_group(ep)
            ep_data_grp.create_dataset("actions", data=np.array(traj["actions"]))
            ep_data_grp.create_dataset("states", data=np.array(traj["states"]))
            if rewards:
                ep_data_grp.create_dataset("rewards", data=np.array(traj["rewards"]))
            ep_data_grp.create_dataset("dones", data=np.array(traj["dones"]))
            for k in traj["obs"]:
                if compress:
                    ep_data_grp.create_dataset(f"obs/{k}", data=np.array(traj["obs"][k]), compression="gzip")
                else:
                    ep_data_grp.create_dataset(f"obs/{k}", data=np.array(traj["obs"][k]))
                if not exclude_next_obs:
                    if compress:
                        ep_data_grp.create_dataset(f"next_obs/{k}", data=np.array(traj["next_obs"][k]),
                                                   compression="gzip")
                    else:
                        ep_data_grp.create_dataset(f"next_obs/{k}", data=np.array(traj["next_obs"][k]))
            ep_data_grp.attrs["model_file"] = "<mujoco model='base'></mujoco>"
            ep_data_grp.attrs["num_samples"] = traj["actions"].shape[0]
            total += traj["actions"].shape[0]
            written[ep] = traj
        for key_name, demo_keys in (masks or {}).items():
            # robomimic.utils.file_utils.create_hdf5_filter_key
            f_out[f"mask/{key_name}"] = np.array(demo_keys, dtype="S")
        data_grp.attrs["total"] = total
        env = robomimic_env_args(env_name, reward_shaping, camera_names=cameras or ("agentview",), hw=image_hw)
        data_grp.attrs["env_args"] = json.dumps(env, indent=4)
    return written


# ------------------------------------------------------------------------------------ Minari

def box_space(shape, low=-np.inf, high=np.inf, dtype="float32") -> dict:
    """serialize_space(Box) with to_string=False."""
    low_a = np.full(shape, low, dtype=np.float64 if dtype != "uint8" else np.uint8)
    high_a = np.full(shape, high, dtype=np.float64 if dtype != "uint8" else np.uint8)
    return {"type": "Box", "dtype": dtype, "shape": list(shape), "low": low_a.tolist(), "high": high_a.tolist()}


def _json_space(space: dict) -> str:
    # json.dumps of a dict whose floats may be +-inf writes Infinity, as Python's json (and Minari) do.
    return json.dumps(space)


def _encode_jpeg(frame: np.ndarray) -> np.ndarray:
    """hdf5_storage.encode_frame."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).flatten()


def _add_episode_to_group(episode_buffer: dict, episode_group, images: set | None = None):
    """hdf5_storage._add_episode_to_group for dict / list-of-arrays data (`images`: keys JPEG-encoded)."""
    import h5py

    for key, data in episode_buffer.items():
        if isinstance(data, dict):
            sub = episode_group[key] if key in episode_group else episode_group.create_group(key)
            _add_episode_to_group(data, sub, images)
        elif images is not None and key in images:
            data = [_encode_jpeg(f) for f in data]
            dt = None
            if any(f.shape != data[0].shape for f in data):
                dt = h5py.vlen_dtype(np.uint8)
            episode_group.create_dataset(key, data=data, dtype=dt, chunks=True)
        else:
            dtype = None
            if all(isinstance(elem, str) for elem in data):
                dtype = h5py.string_dtype(encoding="utf-8")
            dshape = ()
            if hasattr(data[0], "shape"):
                dshape = data[0].shape
            episode_group.create_dataset(key, data=data, dtype=dtype, chunks=True, maxshape=(None, *dshape))


def _episode_buffers(lengths, seed, obs_dim, dict_obs, image_hw, success_info, terminated, rewards_last):
    """Episodes as DataCollector buffers them: T+1 observations and infos, T of the rest."""
    rng = np.random.default_rng(seed)
    out = []
    for i, T in enumerate(lengths):
        if dict_obs:
            obs = {
                "observation": [rng.normal(size=obs_dim).astype(np.float32) for _ in range(T + 1)],
                "desired_goal": [rng.normal(size=3).astype(np.float32) for _ in range(T + 1)],
                "achieved_goal": [rng.normal(size=3).astype(np.float32) for _ in range(T + 1)],
            }
            if image_hw:
                obs["pixels"] = [rng.integers(0, 255, size=(image_hw, image_hw, 3), dtype=np.uint8)
                                 for _ in range(T + 1)]
        else:
            obs = [rng.normal(size=obs_dim).astype(np.float32) for _ in range(T + 1)]
        rewards = [float(x) for x in rng.uniform(-1, 0, size=T)]
        if T and rewards_last is not None:
            rewards[-1] = float(rewards_last[i])
        term = [False] * T
        trunc = [False] * T
        if T:
            term[-1] = bool(terminated[i])
            trunc[-1] = not bool(terminated[i])
        infos = None
        if success_info is not None:
            infos = {"success": [False] * T + [bool(success_info[i])],
                     "time": [float(t) for t in range(T + 1)]}
        out.append({
            "id": i, "seed": int(rng.integers(0, 2 ** 31)),
            "observations": obs,
            "actions": [rng.uniform(-1, 1, size=4).astype(np.float32) for _ in range(T)],
            "rewards": rewards, "terminations": term, "truncations": trunc, "infos": infos,
        })
    return out


def write_minari(root: Path, dataset_id: str = "D4RL/door/human-v2", lengths=(5, 4, 6), seed: int = 0,
                 data_format: str = "hdf5", dict_obs: bool = False, image_hw: int = 0, jpeg_encoding: bool = True,
                 success_info=None, terminated=None, rewards_last=None, obs_dim: int = 6) -> tuple[Path, list]:
    """A Minari dataset at root/<dataset_id>/data as DataCollector.create_dataset leaves it.

    Returns (the dataset folder root/<dataset_id>, the episode buffers written).
    """
    n = len(lengths)
    terminated = [True] * n if terminated is None else terminated
    buffers = _episode_buffers(lengths, seed, obs_dim, dict_obs, image_hw, success_info, terminated, rewards_last)
    dataset_dir = Path(root) / dataset_id
    data = dataset_dir / "data"
    data.mkdir(parents=True)
    if dict_obs:
        subs = {"observation": box_space([obs_dim]), "desired_goal": box_space([3]),
                "achieved_goal": box_space([3])}
        if image_hw:
            subs["pixels"] = box_space([image_hw, image_hw, 3], 0, 255, "uint8")
        obs_space = {"type": "Dict", "subspaces": subs}
    else:
        obs_space = box_space([obs_dim])
    act_space = box_space([4], -1.0, 1.0)
    env_spec = json.dumps({"id": "AdroitHandDoor-v1", "entry_point": "gymnasium_robotics.envs.adroit_hand:AdroitHandDoorEnv",
                           "reward_threshold": None, "nondeterministic": False, "max_episode_steps": 400,
                           "order_enforce": True, "disable_env_checker": False, "kwargs": {"reward_type": "dense"},
                           "additional_wrappers": [], "vector_entry_point": None})
    # MinariStorage.new
    metadata = {"total_episodes": 0, "total_steps": 0, "data_format": data_format, "jpeg_encoding": jpeg_encoding,
                "observation_space": _json_space(obs_space), "action_space": _json_space(act_space),
                "env_spec": env_spec}
    (data / "metadata.json").write_text(json.dumps(metadata))
    images = {"pixels"} if (image_hw and jpeg_encoding) else None
    if data_format == "hdf5":
        import h5py

        with h5py.File(data / "main_data.hdf5", "a", track_order=True) as file:
            for eps in buffers:
                group = file.create_group(f"episode_{eps['id']}")
                group.attrs["id"] = eps["id"]
                group.attrs["seed"] = eps["seed"]
                group.attrs["total_steps"] = len(eps["rewards"])
                buf = {k: eps[k] for k in ("observations", "actions", "rewards", "terminations", "truncations")}
                if eps["infos"] is not None:
                    buf["infos"] = eps["infos"]
                _add_episode_to_group(buf, group, images)
            for eps in buffers:  # EpisodeMetadataCallback via update_episode_metadata
                r = np.asarray(eps["rewards"])
                file[f"episode_{eps['id']}"].attrs.update({
                    "rewards_sum": float(r.sum()), "rewards_mean": float(r.mean()), "rewards_std": float(r.std()),
                    "rewards_max": float(r.max()), "rewards_min": float(r.min())})
    else:
        _write_arrow(data, data_format, buffers, obs_space, jpeg_encoding)
    metadata.update({"total_steps": int(sum(lengths)), "total_episodes": n, "dataset_size": 0.1,
                     "dataset_id": dataset_id, "author": ["aloe tests"], "algorithm_name": "human",
                     "minari_version": "0.5.3"})
    (data / "metadata.json").write_text(json.dumps(metadata))
    return dataset_dir, buffers


def _write_arrow(data: Path, fmt: str, buffers: list, obs_space: dict, jpeg_encoding: bool) -> None:
    """arrow_storage.ArrowStorage.update_episodes + update_episode_metadata."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    def encode(space: dict, values, pad: int = 0):
        if space["type"] == "Dict":
            names = list(values)
            return pa.StructArray.from_arrays([encode(space["subspaces"][k], values[k], pad) for k in names],
                                              names=names)
        if jpeg_encoding and space["dtype"] == "uint8" and len(space["shape"]) == 3:
            return pa.array([_encode_jpeg(f).tobytes() for f in values], type=pa.binary())
        values = np.asarray(values)
        values = values.reshape(values.shape[0], -1)
        values = np.pad(values, ((0, pad), (0, 0)))
        dtype = pa.list_(pa.from_numpy_dtype(np.dtype(space["dtype"])), list_size=values.shape[1])
        return pa.FixedSizeListArray.from_arrays(values.reshape(-1), type=dtype)

    act_space = box_space([4], -1.0, 1.0)
    for eps in buffers:
        observations = encode(obs_space, eps["observations"])
        rewards = np.asarray(eps["rewards"]).reshape(-1)
        terminations = np.asarray(eps["terminations"]).reshape(-1)
        truncations = np.asarray(eps["truncations"]).reshape(-1)
        pad = len(observations) - len(rewards)
        batch = {
            "episode_id": np.full(len(observations), eps["id"], dtype=np.int32),
            "observations": observations,
            "actions": encode(act_space, eps["actions"], pad=pad),
            "rewards": np.pad(rewards, (0, pad)),
            "terminations": np.pad(terminations, (0, pad)),
            "truncations": np.pad(truncations, (0, pad)),
        }
        if eps["infos"]:
            batch["infos"] = pa.StructArray.from_arrays([pa.array(list(v)) for v in eps["infos"].values()],
                                                        names=list(eps["infos"]))
        ds.write_dataset(pa.RecordBatch.from_pydict(batch), data, format=fmt, partitioning=["episode_id"],
                         existing_data_behavior="overwrite_or_ignore")
        r = np.asarray(eps["rewards"])
        meta = {"id": eps["id"], "total_steps": len(rewards), "seed": eps["seed"],
                "rewards_sum": float(r.sum()), "rewards_mean": float(r.mean()), "rewards_std": float(r.std()),
                "rewards_max": float(r.max()), "rewards_min": float(r.min())}
        (data / str(eps["id"]) / "metadata.json").write_text(json.dumps(meta))
