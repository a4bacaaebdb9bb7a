"""Tracking and temporal smoothing of persons across sampled frames (run inside operator PoseDetection)."""

from .smoothing import OneEuroConfig, OneEuroFilter, TrackSmoother
from .tracker import PoseTracker, TrackedPerson, box_iou, keypoint_similarity, motion_similarity
from .temporal import TemporalProcessor

__all__ = [
    "OneEuroConfig",
    "OneEuroFilter",
    "PoseTracker",
    "TemporalProcessor",
    "TrackSmoother",
    "TrackedPerson",
    "box_iou",
    "keypoint_similarity",
    "motion_similarity",
]
