"""Tracking and temporal smoothing of persons across sampled frames (run inside operator PoseDetection)."""

from .smoothing import OneEuroConfig, OneEuroFilter, TrackSmoother
from .tracker import PoseTracker, TrackedPerson, box_iou, keypoint_similarity, motion_similarity
from .temporal import TemporalProcessor, appearance_descriptors, track_frame

__all__ = [
    "OneEuroConfig",
    "OneEuroFilter",
    "PoseTracker",
    "TemporalProcessor",
    "TrackSmoother",
    "TrackedPerson",
    "appearance_descriptors",
    "box_iou",
    "keypoint_similarity",
    "motion_similarity",
    "track_frame",
]
