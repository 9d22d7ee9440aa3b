import math

import numpy as np
import pytest

from dragnext.ground_truth import random_edit, translate_edit
from dragnext.metrics import (
    PSNR_CAP,
    centroid,
    centroid_distance,
    iou,
    psnr,
    recover_shape_mask,
    score_edit,
    ssim,
)
from dragnext.scenes import Circle, Polygon, Scene, random_scene, render, visible_mask


def _image(seed: int = 0) -> np.ndarray:
    return render(random_scene(seed))


def _disc(center, radius, size=64) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def test_identical_images():
    image = _image(3)
    assert psnr(image, image) == PSNR_CAP
    assert ssim(image, image) == pytest.approx(1.0)
    mask = _disc((30, 30), 8)
    assert psnr(image, image, mask) == PSNR_CAP
    assert ssim(image, image, mask) == pytest.approx(1.0)
    assert iou(mask, mask) == 1.0
    assert centroid_distance(mask, mask) == 0.0


def test_uint8_and_float_are_normalised_alike():
    image = _image(4)
    as_uint8 = np.round(image * 255).astype(np.uint8)
    assert psnr(as_uint8, image) > 50
    assert psnr(as_uint8, as_uint8) == PSNR_CAP
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.05, image.shape), 0, 1)
    assert psnr(np.round(noisy * 255).astype(np.uint8), image) == pytest.approx(psnr(noisy, image), abs=0.05)


def test_more_noise_scores_lower():
    image = _image(5)
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, image.shape)
    little = np.clip(image + 0.02 * noise, 0, 1)
    much = np.clip(image + 0.1 * noise, 0, 1)
    assert PSNR_CAP > psnr(little, image) > psnr(much, image)
    assert 1.0 > ssim(little, image) > ssim(much, image)
    mask = _disc((20, 40), 6)
    assert psnr(little, image, mask) > psnr(much, image, mask)
    assert ssim(little, image, mask) > ssim(much, image, mask)
    # PSNR of a known error: a constant offset of 0.1 is 20 dB.
    assert psnr(np.full((8, 8, 3), 0.6), np.full((8, 8, 3), 0.5)) == pytest.approx(20.0)


def test_psnr_over_a_mask_only_sees_the_mask():
    image = _image(6)
    changed = image.copy()
    mask = _disc((32, 32), 10)
    changed[~mask] = 1.0 - changed[~mask]
    assert psnr(changed, image, mask) == PSNR_CAP
    assert psnr(changed, image) < 30
    assert math.isnan(psnr(changed, image, np.zeros((64, 64), bool)))


def test_iou_and_centroid():
    mask = _disc((30, 30), 8)
    one = np.roll(mask, 1, axis=1)
    five = np.roll(mask, 5, axis=1)
    assert 1.0 > iou(mask, one) > iou(mask, five) > 0.0
    assert centroid(mask) == pytest.approx((30.0, 30.0))
    assert centroid_distance(mask, five) == pytest.approx(5.0)
    empty = np.zeros_like(mask)
    assert iou(empty, empty) == 1.0
    assert iou(mask, empty) == 0.0
    assert centroid_distance(mask, empty) == math.inf


def test_recover_shape_mask_matches_coverage_on_rendered_scenes():
    ious = []
    for seed in range(40):
        scene = random_scene(seed)
        image = render(scene)
        for index, shape in enumerate(scene.shapes):
            visible = visible_mask(scene, index) > 0.5
            if visible.sum() >= 40:
                ious.append(iou(recover_shape_mask(image, shape.color), visible))
    assert np.median(ious) > 0.9
    assert np.mean(ious) > 0.9


def _translate_12px():
    scene = Scene(
        size=64,
        color_start=(0.15, 0.2, 0.35),
        color_end=(0.35, 0.15, 0.2),
        gradient_angle=0.3,
        shapes=(
            Circle(center=(48.0, 48.0), radius=7.0, color=(0.1, 0.8, 0.2)),
            Polygon(vertices=((14.2, 16.3), (26.7, 15.1), (28.9, 29.6), (16.1, 31.4)), color=(0.85, 0.7, 0.2)),
        ),
    )
    return translate_edit(scene, 1, (12.0, 0.0))


def test_score_edit_of_the_expected_image():
    edit = _translate_12px()
    for output in (edit.expected_image, np.round(edit.expected_image * 255).astype(np.uint8)):
        scores = score_edit(output, edit)
        assert set(scores) == {"psnr", "ssim", "psnr_shape", "psnr_vacated", "iou", "iou_unedited", "centroid_error"}
        assert scores["iou"] > 0.9
        assert scores["centroid_error"] < 0.5
        assert scores["psnr"] > 50 and scores["ssim"] > 0.99
    scores = score_edit(edit.expected_image, edit)
    assert scores["psnr"] == scores["psnr_shape"] == scores["psnr_vacated"] == PSNR_CAP


def test_score_edit_of_the_unedited_input():
    edit = _translate_12px()
    scores = score_edit(edit.request.image, edit)
    assert scores["iou"] == scores["iou_unedited"]
    assert scores["iou"] < 0.9
    assert scores["centroid_error"] == pytest.approx(12.0, abs=1.0)
    assert scores["psnr_vacated"] < 30 and scores["psnr_shape"] < 30
    expected = score_edit(edit.expected_image, edit)
    assert expected["psnr"] > scores["psnr"] and expected["ssim"] > scores["ssim"]


def test_score_edit_vacated_is_nan_when_nothing_is_vacated():
    edit = _translate_12px()
    from dataclasses import replace

    same = replace(edit, source_mask=np.zeros_like(edit.source_mask))
    assert math.isnan(score_edit(edit.expected_image, same)["psnr_vacated"])


@pytest.mark.parametrize("op_type", ["translate", "rotate", "scale", "deform"])
def test_score_edit_on_random_edits(op_type):
    ious, errors = [], []
    for seed in range(6):
        edit = random_edit(seed, op_type)
        good = score_edit(edit.expected_image, edit)
        bad = score_edit(edit.request.image, edit)
        assert bad["iou"] == bad["iou_unedited"] == good["iou_unedited"]
        assert good["iou"] > good["iou_unedited"]
        ious.append(good["iou"])
        errors.append(good["centroid_error"])
    assert np.median(ious) > 0.9
    assert np.median(errors) < 0.6
