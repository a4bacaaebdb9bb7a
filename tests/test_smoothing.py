"""One-Euro smoothing per track: the filter itself, the operator's Smoothing setting, and the real model on
a still and a moving astronaut (jitter drops, motion lags less than one sampled frame)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mie_pose.backends import create_backend
from mie_pose.operators.pose_inference import persons_to_records
from mie_pose import schema
from mie_pose.tracking import OneEuroConfig, OneEuroFilter, TemporalProcessor

FPS = 2.0
STEP_MS = 1000.0 / FPS
CANVAS = (640, 800)  # height, width


def test_filter_passes_a_constant_and_smooths_noise():
    rng = np.random.default_rng(0)
    flt = OneEuroFilter(OneEuroConfig())
    truth = np.array([[100.0, 200.0]])
    raw = [truth + rng.normal(0, 3, truth.shape) for _ in range(60)]
    out = np.array([flt(p, i * STEP_MS, scale=300.0) for i, p in enumerate(raw)])
    raw = np.array(raw)
    assert np.std(out[10:] - truth) < 0.75 * np.std(raw[10:] - truth)
    assert np.allclose(OneEuroFilter()(truth, 0.0), truth)


def test_filter_uses_timestamps_not_frame_counts():
    """The same motion sampled at 2 fps and at 5 fps lags about the same time behind."""
    lags = []
    for fps in (2.0, 5.0):
        flt = OneEuroFilter(OneEuroConfig())
        speed = 60.0  # px/s, person 300 px tall
        outs = [(t, flt(np.array([[speed * t, 0.0]]), t * 1000, scale=300.0)[0, 0])
                for t in np.arange(0, 10, 1 / fps)]
        lags.append(np.mean([(speed * t - x) / speed for t, x in outs[-5:]]))
    assert lags[0] == pytest.approx(lags[1], rel=0.35)


def test_configuration_parsing():
    assert OneEuroConfig.from_configuration(False) is None
    assert OneEuroConfig.from_configuration(None) == OneEuroConfig()
    assert OneEuroConfig.from_configuration({"Beta": 0}).beta == 0.0
    cfg = OneEuroConfig.from_configuration({"MinCutoff": 1, "Beta": 0.5, "DCutoff": 2})
    assert (cfg.min_cutoff, cfg.beta, cfg.d_cutoff) == (1.0, 0.5, 2.0)
    for bad in ({"MinCutoff": 0}, {"Beta": "x"}, {"Speed": 1}, 3):
        with pytest.raises(ValueError):
            OneEuroConfig.from_configuration(bad)


@pytest.fixture(scope="module")
def backend():
    return create_backend("topdown")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def place(person: np.ndarray, x: float, y: float) -> np.ndarray:
    """The astronaut on a grey canvas with its top-left corner at (x, y), sub-pixel."""
    canvas = np.full(CANVAS + (3,), 127, np.uint8)
    matrix = np.float32([[1, 0, x], [0, 1, y]])
    return cv2.warpAffine(person, matrix, (CANVAS[1], CANVAS[0]), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)


def run_clip(backend, images) -> tuple[np.ndarray, np.ndarray]:
    """Raw and smoothed keypoints (frames, 17, 3) in pixels of one person through the TemporalProcessor."""
    processor = TemporalProcessor(smoothing=OneEuroConfig())
    raw, smooth = [], []
    h, w = CANVAS
    for i, image in enumerate(images):
        persons = backend(image)
        assert len(persons) == 1, f"frame {i}: {len(persons)} persons"
        record = schema.frame_record(i, int(i * STEP_MS), persons_to_records(persons))
        r, s = processor.process(record, w, h)
        raw.append(np.asarray(r["persons"][0]["keypoints"]) * (w, h, 1))
        smooth.append(np.asarray(s["persons"][0]["keypoints"]) * (w, h, 1))
        assert r["persons"][0]["track_id"] == s["persons"][0]["track_id"] == 1
    return np.array(raw), np.array(smooth)


def test_jitter_drops_on_a_still_person(backend, astronaut):
    """Camera shake (+-3 px) and sensor noise on a still astronaut: the smoothed keypoints move less."""
    rng = np.random.default_rng(1)
    images = []
    for _ in range(24):
        image = place(astronaut, 140 + rng.uniform(-3, 3), 60 + rng.uniform(-3, 3))
        noise = rng.normal(0, 4, image.shape)
        images.append(np.clip(image + noise, 0, 255).astype(np.uint8))
    raw, smooth = run_clip(backend, images)
    confident = raw[:, :, 2].min(axis=0) > 0.5
    assert confident.sum() >= 8

    def jitter(kps):  # mean frame-to-frame movement of the confident keypoints, after the filter settles
        steps = np.linalg.norm(np.diff(kps[4:, confident, :2], axis=0), axis=-1)
        return float(steps.mean())

    ratio = jitter(smooth) / jitter(raw)
    assert ratio < 0.75, ratio  # measured 0.5-0.6


def test_moving_person_lags_less_than_one_sampled_frame(backend, astronaut):
    """The astronaut pans 20 px per sampled frame (40 px/s): the smoothed keypoints trail the raw ones by
    less than one frame's motion."""
    speed = 20.0
    images = [place(astronaut, 20 + speed * i, 60) for i in range(14)]
    raw, smooth = run_clip(backend, images)
    confident = raw[:, :, 2].min(axis=0) > 0.5
    lag_px = (raw[4:, confident, 0] - smooth[4:, confident, 0]).mean()
    assert 0 <= lag_px / speed < 1.0, lag_px / speed  # measured about 0.5
