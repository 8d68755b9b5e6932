"""Optical flow, warping and reliability masks on synthetic motion whose true flow is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.video.flow import FlowEstimator, inside_frame, reliability_mask, warp, warping_error

REPO = Path(__file__).resolve().parents[1]
SHIFT = 3  # pixels the camera pans right per frame


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return np.asarray(Image.open(REPO / "samples/photos/astronaut.jpg").resize((256, 256)))


def crop(scene: np.ndarray, left: int) -> np.ndarray:
    return np.ascontiguousarray(scene[60:156, left : left + 128])


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def pan(scene):
    previous, current = crop(scene, 60), crop(scene, 60 + SHIFT)  # current(x) = previous(x + SHIFT)
    estimate = FlowEstimator()
    backward, forward = estimate(current, previous), estimate(previous, current)
    return previous, current, backward, forward


def test_dis_recovers_a_known_pan(pan):
    _, _, backward, forward = pan
    interior = (..., slice(16, -16), slice(16, -16))
    assert backward[interior][0, 0].median() == pytest.approx(SHIFT, abs=0.25)
    assert backward[interior][0, 1].abs().median() < 0.25
    assert forward[interior][0, 0].median() == pytest.approx(-SHIFT, abs=0.25)


def test_warp_with_the_true_flow_lines_frames_up(pan):
    previous, current, _, _ = pan
    true_flow = torch.zeros(1, 2, *current.shape[:2])
    true_flow[:, 0] = SHIFT
    warped = warp(tensor(previous), true_flow)
    inside = (..., slice(None), slice(None, -SHIFT))
    assert torch.allclose(warped[inside], tensor(current)[inside], atol=1e-5)


def test_mask_drops_pixels_that_come_from_outside_the_frame(pan):
    _, _, backward, forward = pan
    mask = reliability_mask(backward, forward)
    assert mask.shape == (1, 1, 96, 128)
    assert mask[..., -SHIFT:].sum() == 0  # their source lies beyond the previous frame's edge
    assert mask[..., 8:-8, 8:-8].mean() > 0.9  # the rest of a rigid pan is reliable
    assert torch.equal(inside_frame(torch.zeros(1, 2, 4, 4)), torch.ones(1, 1, 4, 4))


def test_mask_flags_disocclusion_behind_a_moving_object(scene):
    background = crop(scene, 60)
    square = np.full((24, 24, 3), 255, np.uint8)
    square[::4] = 0  # texture so the flow can lock on
    previous, current = background.copy(), background.copy()
    previous[36:60, 40:64] = square
    current[36:60, 52:76] = square  # the square moves 12 px right; background still
    estimate = FlowEstimator()
    backward, forward = estimate(current, previous), estimate(previous, current)
    mask = reliability_mask(backward, forward)
    uncovered = mask[..., 40:58, 42:50]  # background the square has just left
    assert uncovered.mean() < 0.5
    assert mask[..., :, 100:].mean() > 0.9  # far from the motion all is reliable


def test_warping_error_is_low_after_compensation_and_zero_for_a_still(pan):
    previous, current, backward, forward = pan
    mask = reliability_mask(backward, forward)
    compensated = warping_error(tensor(current), tensor(previous), backward, mask)
    raw = float((tensor(current) - tensor(previous)).pow(2).mean())
    assert compensated < raw / 20
    still = torch.zeros(1, 2, 96, 128)
    assert warping_error(tensor(current), tensor(current), still, torch.ones(1, 1, 96, 128)) < 1e-12
