"""Chunk/TD arithmetic against numbers worked by hand (the working is in the comments)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from aloe_cli import chunks as C

# Two episodes laid end to end: ep0 has 5 frames (global 0..4), ep1 has 2 (global 5..6),
# so ep1 is shorter than H = 3. ep0 terminated (an outcome), ep1 truncated (no outcome).
LENGTHS = np.array([5, 2])
REWARDS = np.array([1, 2, 3, 4, 5, 10, 20], dtype=np.float64)
GAMMA = 0.5
H = 3
END = np.array([5, 5, 5, 5, 5, 7, 7])  # one past each frame's episode's last frame
TERMINATED = np.array([True] * 5 + [False] * 2)
IDX = np.arange(7)


def test_layout():
    starts, ends = C.episode_bounds(LENGTHS)
    assert starts.tolist() == [0, 5] and ends.tolist() == [5, 7]
    assert C.frame_episode_end(LENGTHS).tolist() == END.tolist()
    assert C.frame_time(LENGTHS).tolist() == [0, 1, 2, 3, 4, 0, 1]


def test_windows_clamp_to_the_episode_and_mask_padding():
    win, valid = C.chunk_windows(IDX, END, H)
    # t=0: 0,1,2 all real.  t=3 (2 frames left): 3,4 then 4 again as padding.
    # t=4 (last frame): 4 + two pads.  ep1 (T=2 < H): 5,6 + pad; 6 + two pads.
    assert win.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4], [4, 4, 4], [5, 6, 6], [6, 6, 6]]
    assert valid.tolist() == [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]]
    # h = min(H, T - t) = number of valid entries
    assert C.chunk_lengths(IDX, END, H).tolist() == [3, 3, 3, 2, 1, 2, 1]
    assert (C.chunk_lengths(IDX, END, H) == valid.sum(1)).all()


def test_return_to_go_by_hand():
    # ep0, backwards with gamma = 0.5: G4 = 5; G3 = 4 + .5*5 = 6.5; G2 = 3 + .5*6.5 = 6.25;
    # G1 = 2 + .5*6.25 = 5.125; G0 = 1 + .5*5.125 = 3.5625.  ep1: G6 = 20; G5 = 10 + .5*20 = 20.
    G = C.discounted_return_to_go(REWARDS, LENGTHS, GAMMA)
    np.testing.assert_allclose(G, [3.5625, 5.125, 6.25, 6.5, 5.0, 20.0, 20.0], rtol=0, atol=1e-12)


def test_chunk_rewards_by_hand_including_gamma_h_at_the_tail():
    G = C.discounted_return_to_go(REWARDS, LENGTHS, GAMMA)
    R = C.chunk_rewards(G, IDX, END, H, GAMMA)
    # t=0: 1 + .5*2 + .25*3 = 2.75      t=1: 2 + .5*3 + .25*4 = 4.5    t=2: 3 + .5*4 + .25*5 = 6.25
    # t=3 (h=2): 4 + .5*5 = 6.5          t=4 (h=1): 5
    # ep1 t=0 (h=2): 10 + .5*20 = 20     t=1 (h=1): 20
    np.testing.assert_allclose(R, [2.75, 4.5, 6.25, 6.5, 5.0, 20.0, 20.0], atol=1e-12)
    # gamma^h on the bootstrap: h = 3,3,3,2,1,2,1 -> .125,.125,.125,.25,.5,.25,.5
    np.testing.assert_allclose(C.bootstrap_discount(IDX, END, H, GAMMA),
                               [.125, .125, .125, .25, .5, .25, .5])


def test_bootstrap_frame_terminal_mask_and_truncated_chunks():
    boot, m = C.bootstrap_frames(IDX, END, H)
    # t + 3 inside the episode only for t = 0 (-> 3) and t = 1 (-> 4); else clamped, m = 0.
    assert boot.tolist() == [3, 4, 4, 4, 4, 6, 6]
    assert m.tolist() == [1, 1, 0, 0, 0, 0, 0]
    # ep0 terminated: every chunk is a target (m = 0 ends it). ep1 truncated: t=0 needs frame 3 of
    # a 2-frame episode, t=1 frame 4: no next observation, so neither is a TD target.
    assert C.td_usable(IDX, END, TERMINATED, H).tolist() == [True] * 5 + [False, False]
    # A truncated episode long enough keeps its chunks with a bootstrap frame.
    assert C.td_usable([0, 1, 2], [5, 5, 5], [False] * 3, 3).tolist() == [True, True, False]


def test_chunk_targets_by_hand():
    G = C.discounted_return_to_go(REWARDS, LENGTHS, GAMMA)
    R = C.chunk_rewards(G, IDX, END, H, GAMMA)
    _, m = C.bootstrap_frames(IDX, END, H)
    y = C.chunk_targets(R, C.bootstrap_discount(IDX, END, H, GAMMA), m, np.full(7, 8.0))
    # t=0: 2.75 + .125*1*8 = 3.75; t=1: 4.5 + 1 = 5.5; the rest have m = 0: y = R.
    np.testing.assert_allclose(y, [3.75, 5.5, 6.25, 6.5, 5.0, 20.0, 20.0])


def test_fill_past_end_only_touches_padding_of_terminated_chunks():
    win, valid = C.chunk_windows(IDX, END, H)
    fill = np.full((7, 3), 99)
    use = np.array([1, 1, 1, 1, 0, 1, 1], bool)
    out = C.fill_past_end(win, valid, TERMINATED, fill, use)
    # t=3: [3, 4, pad] -> [3, 4, 99]; t=4 is not chosen (use = 0): stays [4, 4, 4];
    # ep1 is truncated: its padding stays. Real actions are never replaced.
    assert out.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 99], [4, 4, 4], [5, 6, 6], [6, 6, 6]]


def test_long_episode_return_to_go_is_exact():
    # Constant reward c over T = 5000 frames, gamma = .99: G_t = c (1 - gamma^(T-t)) / (1 - gamma).
    T, g, c = 5000, 0.99, -1 / 150
    G = C.discounted_return_to_go(np.full(T, c), np.array([T]), g)
    t = np.arange(T)
    np.testing.assert_allclose(G, c * (1 - g ** (T - t)) / (1 - g), rtol=1e-12)
    end = np.full(T, T)
    R = C.chunk_rewards(G, t, end, 50, g)
    h = np.minimum(50, T - t)
    np.testing.assert_allclose(R, c * (1 - g ** h) / (1 - g), rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=5), st.integers(1, 6),
       st.floats(0.3, 1.0), st.integers(0, 2 ** 31 - 1))
def test_matches_naive_loops(lengths, H, gamma, seed):
    lengths = np.array(lengths)
    r = np.random.default_rng(seed).normal(size=lengths.sum())
    end = C.frame_episode_end(lengths)
    G = C.discounted_return_to_go(r, lengths, gamma)
    R = C.chunk_rewards(G, np.arange(len(r)), end, H, gamma)
    for i in range(len(r)):  # the reference: plain loops
        ref_g = sum(gamma ** k * r[j] for k, j in enumerate(range(i, end[i])))
        ref_r = sum(gamma ** k * r[j] for k, j in enumerate(range(i, min(i + H, end[i]))))
        assert abs(G[i] - ref_g) < 1e-9 and abs(R[i] - ref_r) < 1e-9
