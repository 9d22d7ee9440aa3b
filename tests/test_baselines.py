"""Baselines: point tracking and motion supervision on synthetic features, and each method on the bundled model
(tiny settings; its quality is not relied on). The latent warp itself: test_transport.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragnext.baselines import (
    PointSettings,
    drag_points,
    identity,
    motion_supervision_loss,
    point_drag,
    sample_features,
    track_points,
    warp_drag,
)
from dragnext.config import BUNDLED
from dragnext.ground_truth import random_edit

torch.set_num_threads(1)

SIZE = 32
TINY = BUNDLED.override(num_steps=10, pbsi_timesteps=1, iterations=2)


def blob_features(center_rc: tuple[float, float], size: int = SIZE) -> torch.Tensor:
    """[1, 3, size, size]: two Gaussian blobs of different widths at ``center_rc`` and a horizontal ramp."""
    rows, cols = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    distance = (rows - center_rc[0]) ** 2 + (cols - center_rc[1]) ** 2
    return torch.stack([torch.exp(-distance / 8.0), torch.exp(-distance / 32.0), 0.2 * cols / size])[None]


# ------------------------------------------------------------------------------------------ point tracking


def test_tracking_finds_the_original_handle_feature_where_it_moved():
    original = blob_features((10, 10))
    moved = blob_features((12, 11))
    anchors = sample_features(original, np.array([[10.0, 10.0]]))
    assert np.array_equal(track_points(moved, anchors, np.array([[10.0, 10.0]]), radius=3), [[12.0, 11.0]])


def test_tracking_searches_only_its_window_and_stays_on_the_map():
    original = blob_features((10, 10))
    far = blob_features((20, 20))  # outside the 7 x 7 window around (10, 10): the best inside is toward it
    anchors = sample_features(original, np.array([[10.0, 10.0]]))
    tracked = track_points(far, anchors, np.array([[10.0, 10.0]]), radius=3)
    assert np.array_equal(tracked, [[13.0, 13.0]])
    corner = track_points(original, sample_features(original, np.array([[0.0, 0.0]])), np.array([[0.0, 0.0]]), 3)
    assert np.array_equal(corner, [[0.0, 0.0]])


def test_bilinear_sampling_between_pixels():
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert sample_features(features, np.array([[1.0, 2.0]])).item() == pytest.approx(6.0)
    assert sample_features(features, np.array([[1.5, 2.5]])).item() == pytest.approx((6 + 7 + 10 + 11) / 4)


def test_motion_supervision_step_pulls_the_handle_feature_one_unit_toward_the_target():
    features = blob_features((10, 10)).requires_grad_(True)
    loss = motion_supervision_loss(features, np.array([[10.0, 10.0]]), np.array([[10.0, 18.0]]), 1, 1.0)
    loss.backward()
    grad = features.grad[0, 0]
    # only the stepped patch (one unit to the right: columns 10-12) gets a gradient; the detached source none
    assert grad[9:12, 10:13].abs().sum() > 0
    assert grad[:, :10].abs().sum() == 0 and grad[:, 13:].abs().sum() == 0
    # a small step down it makes the patch one unit to the right look more like the handle's patch
    with torch.no_grad():
        stepped = features - 0.05 * features.grad
    handle_patch = features.detach()[..., 9:12, 9:12]
    before = (features.detach()[..., 9:12, 10:13] - handle_patch).abs().sum()
    assert (stepped[..., 9:12, 10:13] - handle_patch).abs().sum() < before
    arrived = motion_supervision_loss(features, np.array([[10.0, 17.5]]), np.array([[10.0, 18.0]]), 1, 1.0)
    assert arrived.item() == 0.0


def test_point_drag_loop_moves_the_tracked_handle_to_the_target():
    latent = blob_features((10, 10))
    result = drag_points(latent, lambda z: z, [(10.0, 10.0)], [(10.0, 18.0)],
                         PointSettings(max_iterations=80, learning_rate=0.1))
    assert result.reached
    assert np.linalg.norm(result.points[0] - [10.0, 18.0]) < 1.0
    assert 0 < len(result.losses) < 80
    # the latent itself changed where the handle went
    assert (result.latent[0, 0, 10, 14:19] - latent[0, 0, 10, 14:19]).sum() > 0.5


def test_point_drag_stops_at_the_iteration_budget_and_keeps_the_gradient_mask():
    latent = blob_features((10, 10))
    mask = torch.zeros(1, 1, SIZE, SIZE)
    result = drag_points(latent, lambda z: z, [(10.0, 10.0)], [(10.0, 18.0)],
                         PointSettings(max_iterations=3, learning_rate=0.1), gradient_mask=mask)
    assert not result.reached and len(result.losses) == 3
    assert torch.equal(result.latent, latent)  # the mask zeroed every gradient


# ------------------------------------------------------------------------------------------ on the bundled model


@pytest.fixture(scope="module")
def bundled():
    from dragnext.models import load_backbone

    return load_backbone("bundled", device="cpu")


@pytest.fixture(scope="module")
def scene():
    return random_edit(1000, "translate")


def test_identity_returns_about_the_input(bundled, scene):
    result = identity(bundled, scene.request, TINY)
    assert result.image.shape == scene.request.image.shape
    difference = np.abs(result.image.astype(float) - scene.request.image).mean()
    assert difference < 8.0  # DDIM inversion + reconstruction of 5 steps, in 0-255 grey levels
    steps = TINY.inversion_steps
    assert (result.passes.forward, result.passes.truncated_forward, result.passes.backward) == (2 * steps, 0, 0)
    assert result.config.pbsi_timesteps == 0 and not result.config.mutual_attention


@pytest.mark.slow
def test_warp_and_point_on_the_bundled_model_count_their_passes(bundled, scene):
    steps = TINY.inversion_steps
    warped = warp_drag(bundled, scene.request, TINY)
    assert warped.image.shape == scene.request.image.shape
    # inversion, then denoising with mutual attention (a batch of two) and no optimisation
    assert (warped.passes.forward, warped.passes.truncated_forward, warped.passes.backward) == (3 * steps, 0, 0)

    settings = PointSettings(max_iterations=3)
    pointed = point_drag(bundled, scene.request, TINY, settings=settings)
    assert pointed.config.pbsi_timesteps == 1
    steps_taken = len(pointed.loss_history[0])
    assert 1 <= steps_taken <= 3
    assert pointed.passes.backward == steps_taken
    # the anchors' forward, one per optimisation step, and one more that tracks (and finds arrival or the budget)
    assert pointed.passes.truncated_forward == steps_taken + 2
    assert pointed.passes.forward == 3 * steps
