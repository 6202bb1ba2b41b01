"""Column names, dtypes and file names of the episode store: defined here once.

Every other module (readers, store, critic, scoring, export) refers to these
constants instead of spelling a column name again.
"""

from __future__ import annotations

import pyarrow as pa

FORMAT_VERSION = 1

# Files inside a store directory.
MANIFEST_FILE = "aloe.json"
EPISODES_FILE = "episodes.parquet"
FRAMES_DIR = "frames"
TXN_FILE = ".aloe-txn.json"
LOCK_FILE = ".aloe.lock"
STAGING_DIR = ".staging"

# Files inside a built-in policy directory (written by `aloe improve`).
POLICY_FILE = "policy.json"  # config, normalisation stats, task vocabulary, store fingerprint
POLICY_WEIGHTS_FILE = "model.safetensors"  # network weights
POLICY_LOG_FILE = "train_log.jsonl"  # one JSON object per logged training step
POLICY_SPLIT_FILE = "split.json"  # train / validation episode ids

# Frame columns (STORE/frames/*.parquet; one row group per episode).
EPISODE_ID = "episode_id"
FRAME_INDEX = "frame_index"
TIMESTAMP = "timestamp"
OBS_PREFIX = "observation."
OBS_STATE = "observation.state"
OBS_IMAGES_PREFIX = "observation.images."
# A camera feature's "names" in aloe.json, when its "shape" is [height, width, 3] (LeRobot's convention).
IMAGE_NAMES = ["height", "width", "channels"]
ACTION = "action"
REWARD = "reward"
IS_INTERVENTION = "is_intervention"
TASK = "task"  # also passed to policies as a per-observation list of strings

# Episode columns (STORE/episodes.parquet; one row per episode).
SOURCE = "source"
FORMAT = "format"
SOURCE_KEY = "source_key"
POLICY_ID = "policy_id"
SUCCESS = "success"
TERMINATED = "terminated"
TRUNCATED = "truncated"
LENGTH = "length"
INTERVENTION_FRAMES = "intervention_frames"
FPS = "fps"
FRAMES_FILE = "frames_file"
ROW_GROUP = "row_group"
INGEST_ID = "ingest_id"

HUMAN_POLICY_ID = "human"
UNKNOWN_POLICY_ID = "unknown"

# Scores directory (written by `aloe score`, read by the report, `aloe improve` and `aloe export`).
SCORES_CHUNKS_FILE = "chunks.parquet"  # one row per scored chunk start
SCORES_EPISODES_FILE = "episodes.parquet"  # one row per episode
SCORES_SUMMARY_FILE = "summary.json"  # the `aloe score --json` summary
REPORT_FILE = "report.html"

# Per-frame columns `aloe export` adds next to the original frames (LeRobotDataset features).
EXPORT_ADVANTAGE = "aloe.advantage"  # float32: the advantage of the chunk starting at the frame
EXPORT_WEIGHT = "aloe.weight"  # float32: the chosen method's training weight of that chunk
EXPORT_POSITIVE = "aloe.advantage_positive"  # bool: RECAP's indicator (A above the 70th percentile, or a human's)

# Chunk score columns, joined back to frames on (episode_id, frame_index); the chunk rows also
# carry POLICY_ID, TASK and IS_INTERVENTION (of the chunk's first frame).
Q = "q"  # Q of the logged chunk, aggregated over the ensemble as the critic was trained
Q_STD = "q_std"  # std of Q across ensemble heads
V = "v"  # V^pi(o_t): mean over K policy samples of aggregated Q
ADVANTAGE = "advantage"  # q - v
ADVANTAGE_NORM = "advantage_norm"  # advantage / std of advantages within the task
CHUNK_LEN = "chunk_len"  # h = min(H, T - t): real (unpadded) actions in the chunk

# Episode score columns (SCORES_DIR/episodes.parquet), plus EPISODE_ID, POLICY_ID, TASK, SUCCESS, LENGTH.
RETURN = "return"  # discounted return of the logged episode under the critic's reward spec
V_START = "v_start"  # V^pi at the first frame
Q_START = "q_start"  # Q of the logged first chunk
ADV_MIN = "adv_min"
ADV_MIN_FRAME = "adv_min_frame"
ADV_MAX = "adv_max"
ADV_MAX_FRAME = "adv_max_frame"
V_DROP_MAX = "v_drop_max"  # largest fall of V between consecutive scored chunks
V_DROP_FRAME = "v_drop_frame"  # frame where that fall lands
CRITICAL_FRAMES = "critical_frames"  # list<int64>: chunk starts of the critical chunks
INTERVENTION_SPANS = "intervention_spans"  # list<list<int64>>: [start, end) frame spans

# The columns a labels file, --success and --policy-id set; Store.labels_fingerprint hashes them.
LABEL_COLUMNS = (EPISODE_ID, SUCCESS, TERMINATED, TRUNCATED, POLICY_ID)

EPISODES_SCHEMA = pa.schema(
    [
        pa.field(EPISODE_ID, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string()),
        pa.field(FORMAT, pa.string()),
        pa.field(SOURCE_KEY, pa.string()),
        pa.field(POLICY_ID, pa.string()),
        pa.field(TASK, pa.string()),
        pa.field(SUCCESS, pa.bool_()),  # null = unknown outcome
        pa.field(TERMINATED, pa.bool_(), nullable=False),
        pa.field(TRUNCATED, pa.bool_(), nullable=False),
        pa.field(LENGTH, pa.int64(), nullable=False),
        pa.field(INTERVENTION_FRAMES, pa.int64(), nullable=False),
        pa.field(FPS, pa.float64()),
        pa.field(FRAMES_FILE, pa.string(), nullable=False),
        pa.field(ROW_GROUP, pa.int64(), nullable=False),
        pa.field(INGEST_ID, pa.string()),
    ]
)


def vector_type(dim: int) -> pa.DataType:
    """A fixed-size float32 vector of `dim` numbers."""
    return pa.list_(pa.float32(), dim)


def frames_schema(state_dim: int, action_dim: int, extras: dict[str, int] | None = None,
                  images: list[str] | None = None) -> pa.Schema:
    """The frames schema for a store: base columns, then extra numeric observations and cameras.

    `extras` maps a full column name (``observation.<name>``) to its width; `images` lists
    camera column names (``observation.images.<cam>``) stored as encoded image bytes.
    """
    fields = [
        pa.field(EPISODE_ID, pa.string(), nullable=False),
        pa.field(FRAME_INDEX, pa.int64(), nullable=False),
        pa.field(TIMESTAMP, pa.float32(), nullable=False),
        pa.field(OBS_STATE, vector_type(state_dim), nullable=False),
        pa.field(ACTION, vector_type(action_dim), nullable=False),
        pa.field(REWARD, pa.float32()),
        pa.field(IS_INTERVENTION, pa.bool_(), nullable=False),
    ]
    for name, dim in sorted((extras or {}).items()):
        fields.append(pa.field(name, vector_type(dim)))
    for name in sorted(images or []):
        fields.append(pa.field(name, pa.binary()))
    return pa.schema(fields)
