"""Camera frames as model inputs: the --obs parser, decoding once, random shift, the conv encoder."""

from __future__ import annotations

import numpy as np
import pytest

from aloe_cli import schema as S
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput
from aloe_cli.formats._images import encode_frames
from aloe_cli.store import Store
from aloe_cli.vision import ObsSpec, check_obs, decode_batch, load_images, parse_obs, random_shift


def image_store(path, frames_per_ep=(5, 7), size=16, seed=0, embed=False):
    """A store whose episodes carry a camera `cam` (PNG) and optionally an `embed` column."""
    rng = np.random.default_rng(seed)
    written = []
    store = Store.open(path, create=True)
    with store.writer("synthetic", "test") as w:
        for i, T in enumerate(frames_per_ep):
            img = rng.integers(0, 256, size=(T, size, size, 3), dtype=np.uint8)
            ep = Episode(state=rng.normal(size=(T, 3)).astype(np.float32),
                         action=rng.normal(size=(T, 2)).astype(np.float32), source_key=f"ep{i}", success=True,
                         images={"observation.images.cam": encode_frames(img)},
                         extras={"observation.embed": rng.normal(size=(T, 4)).astype(np.float32)} if embed else {})
            w.add(ep)
            written.append(img)
        w.commit()
    return Store.open(path), written


def test_parse_obs_names_columns():
    assert parse_obs(None) == ObsSpec()
    assert parse_obs("state").columns == ["observation.state"]
    spec = parse_obs("state, images.top ,clip,observation.images.wrist")
    assert spec.images == ("observation.images.top", "observation.images.wrist")
    assert spec.extras == ("observation.clip",)
    assert spec.columns == ["observation.state", "observation.clip", "observation.images.top",
                            "observation.images.wrist"]
    assert str(spec) == "state,clip,images.top,images.wrist"


@pytest.mark.parametrize("spec,msg", [
    ("state,,images.top", "--obs: empty name in 'state,,images.top'"),
    ("images.", "--obs: 'images.' names no camera (use images.<cam>)"),
    ("images.top,images.top", "--obs: 'images.top' is named twice"),
])
def test_parse_obs_bad(spec, msg):
    with pytest.raises(BadInput) as e:
        parse_obs(spec)
    assert str(e.value) == msg


def test_check_obs_against_store(tmp_path):
    store, _ = image_store(tmp_path / "s", embed=True)
    check_obs(parse_obs("state,images.cam,embed"), store)
    with pytest.raises(BadInput) as e:
        check_obs(parse_obs("images.top"), store)
    assert str(e.value) == f"{store.root}: --obs: the store has no camera 'top' (cameras: images.cam)"
    with pytest.raises(BadInput) as e:
        check_obs(parse_obs("clip"), store)
    assert str(e.value) == (f"{store.root}: --obs: the store has no numeric column 'observation.clip' "
                            "(extra columns: embed)")


def test_load_images_decodes_identical_pixels_in_store_order(tmp_path):
    store, written = image_store(tmp_path / "s", frames_per_ep=(5, 7, 3))
    imgs = load_images(store, "observation.images.cam", store.episodes[S.EPISODE_ID])
    assert imgs.dtype == np.uint8 and imgs.shape == (15, 16, 16, 3)
    np.testing.assert_array_equal(imgs, np.concatenate(written))
    # Only the second episode, alone.
    two = load_images(store, "observation.images.cam", store.episodes[S.EPISODE_ID][1:2])
    np.testing.assert_array_equal(two, written[1])


def test_decode_batch_rejects_bad_frames():
    good = encode_frames(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(BadInput) as e:
        decode_batch(good + [b"not a png"], "f.parquet", "observation.images.cam")
    assert str(e.value).startswith("f.parquet: observation.images.cam: frame 1 is not a decodable image")
    with pytest.raises(BadInput) as e:
        decode_batch(good + encode_frames(np.zeros((1, 4, 8, 3), np.uint8)), "f.parquet", "c")
    assert str(e.value) == "f.parquet: c: frame 1 is 8x4 but frame 0 is 8x8; re-ingest with --image-size WxH"


def test_a_store_frame_that_cannot_be_used_is_named_by_episode_and_frame(tmp_path):
    """Decoding a camera over many episodes named the row of the whole store ("frame 12 has no image");
    it names the episode and its frame."""
    store, _ = image_store(tmp_path / "s", frames_per_ep=(5, 7))
    with store.writer("other", "test") as w:  # a third episode without the camera: its frames are null
        w.add(Episode(state=np.zeros((3, 3), np.float32), action=np.zeros((3, 2), np.float32), source_key="bare"))
        w.commit()
    store = Store.open(tmp_path / "s")
    eid = store.episodes[S.EPISODE_ID].iloc[2]
    with pytest.raises(BadInput) as e:
        load_images(store, "observation.images.cam", store.episodes[S.EPISODE_ID])
    assert str(e.value) == f"{store.root}: observation.images.cam: episode {eid} frame 0 has no image"
    small = encode_frames(np.zeros((2, 8, 8, 3), np.uint8))
    big = image_store(tmp_path / "t", frames_per_ep=(4,))[0]
    with big.writer("other", "test") as w:
        w.add(Episode(state=np.zeros((2, 3), np.float32), action=np.zeros((2, 2), np.float32), source_key="small",
                      images={"observation.images.cam": small}))
        w.commit()
    big = Store.open(tmp_path / "t")
    first, second = big.episodes[S.EPISODE_ID]
    with pytest.raises(BadInput) as e:
        load_images(big, "observation.images.cam", big.episodes[S.EPISODE_ID])
    assert str(e.value) == (f"{big.root}: observation.images.cam: episode {second} frame 0 is 8x8 but episode "
                            f"{first} frame 0 is 16x16; re-ingest with --image-size WxH")


def test_random_shift_is_a_translation_with_replicated_edges():
    import torch

    x = torch.arange(2 * 6 * 6 * 1, dtype=torch.float32).reshape(2, 6, 6, 1)
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, pad=2, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    # Recompute the offsets the generator drew and check every sample by hand.
    g = torch.Generator().manual_seed(0)
    sy = torch.randint(0, 5, (2,), generator=g)
    sx = torch.randint(0, 5, (2,), generator=g)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                src_i = min(max(i + int(sy[b]) - 2, 0), 5)
                src_j = min(max(j + int(sx[b]) - 2, 0), 5)
                assert y[b, i, j, 0] == x[b, src_i, src_j, 0]
    # uint8 in, uint8 out; pad 0 is the identity.
    u = torch.zeros(3, 8, 8, 3, dtype=torch.uint8)
    assert random_shift(u).dtype == torch.uint8 and random_shift(u).shape == (3, 8, 8, 3)
    assert random_shift(x, pad=0) is x


def test_conv_encoder_shapes():
    import torch

    from aloe_cli.vision import conv_encoder

    for hw in (16, 64):
        enc = conv_encoder(hw, hw)
        out = enc(torch.zeros(5, hw, hw, 3, dtype=torch.uint8))
        assert out.shape == (5, 64)
