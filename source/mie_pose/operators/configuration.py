"""Each operator's Configuration, typed, with its defaults, parsed and validated in this one place.

The local engine, the AWS Lambdas, the workflow definition (``pose_workflow.json`` carries only what MIE
requires every operation to register: ``MediaType`` and ``Enabled``), the workflow registration and the
API all read the defaults and the validation from here. Standard library only: the API's Lambda imports it
without OpenCV or numpy.

A Configuration is what MIE passes an operator: ``{"MediaType", "Enabled", ...operator settings}``.
``parse(operator, raw)`` fills the defaults and returns a frozen dataclass; ``resolve`` gives the same as
a plain dict (what an execution record and the next stage see). An unknown key is refused, so that a typo
(``"Fps"``) is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

# MIE: an operation runs only when its MediaType is among the workflow's media ("MetadataOnly" always).
METADATA_ONLY = "MetadataOnly"
SMOOTHING_KEYS = ("MinCutoff", "Beta", "DCutoff")
MAX_WORKERS = 64


class ConfigurationError(ValueError):
    """A Configuration value is invalid; the message names the setting and is fit to show a user."""


def _flag(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def _int(name: str, value, *, minimum: int, maximum: int | None = None, optional: bool = False) -> int | None:
    if optional and (value is None or value == ""):
        return None
    number = value
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if not isinstance(number, int) or isinstance(number, bool) or number < minimum or \
            (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigurationError(f"{name} must be an integer {bound}{' or null' if optional else ''}, got {value!r}")
    return number


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                                 f"got {value!r}")
    return number


def _text(name: str, value, *, optional: bool = False) -> str | None:
    if optional and (value is None or value == ""):
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class OperatorConfiguration:
    """What every MIE operation's Configuration has."""

    MediaType: str = "Video"
    Enabled: bool = True

    OPERATOR: ClassVar[str] = ""

    @classmethod
    def parse(cls, raw: dict | None) -> "OperatorConfiguration":
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{cls.OPERATOR} Configuration must be an object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigurationError(f"{cls.OPERATOR} has no setting {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(known))})")
        # null (or absent) means the default.
        return cls(**{key: value for key, value in raw.items() if value is not None}).validated()

    def validated(self) -> "OperatorConfiguration":
        return dataclasses.replace(self, MediaType=_text("MediaType", self.MediaType),
                                   Enabled=_flag("Enabled", self.Enabled), **self._validate())

    def _validate(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def runs_on(self, media: dict) -> bool:
        """MIE's filter: Enabled, and the MediaType is among the media (or MetadataOnly)."""
        return self.Enabled and (self.MediaType == METADATA_ONLY or self.MediaType in (media or {}))


@dataclass(frozen=True)
class FrameExtractionConfiguration(OperatorConfiguration):
    """``FPS`` frames per second of video time; at most ``MaxFrames``; resized to ``MaxWidth`` pixels wide.
    ``RangeSeconds``: on AWS, each parallel worker samples this many seconds of video."""

    FPS: float = 2.0
    MaxFrames: int | None = None
    MaxWidth: int | None = None
    RangeSeconds: float = 300.0

    OPERATOR: ClassVar[str] = "FrameExtraction"

    def _validate(self) -> dict:
        return {"FPS": _positive("FPS", self.FPS),
                "MaxFrames": _int("MaxFrames", self.MaxFrames, minimum=1, optional=True),
                "MaxWidth": _int("MaxWidth", self.MaxWidth, minimum=16, optional=True),
                "RangeSeconds": _positive("RangeSeconds", self.RangeSeconds)}


@dataclass(frozen=True)
class PoseDetectionConfiguration(OperatorConfiguration):
    """``Backend`` (a registry name) and its ``ModelDir``; results stored ``PageFrames`` frames a page;
    ``Tracking``; ``Smoothing`` (false, true for One-Euro defaults, or ``{"MinCutoff", "Beta", "DCutoff"}``,
    any subset; needs Tracking); ``Workers`` backend threads (``"auto"``: sized to the cores); ``Pipeline``
    (false: the plain one-frame-at-a-time loop). ``EndpointBatch``: on AWS, images per endpoint request
    (null: a whole chunk, split only at the request size limit)."""

    Backend: str = "topdown"
    ModelDir: str | None = None
    PageFrames: int = 100
    Tracking: bool = True
    Smoothing: Any = True
    Workers: Any = "auto"
    Pipeline: bool = True
    EndpointBatch: int | None = None

    OPERATOR: ClassVar[str] = "PoseDetection"

    def _validate(self) -> dict:
        tracking = _flag("Tracking", self.Tracking)
        smoothing = self.Smoothing
        if isinstance(smoothing, str):
            smoothing = _flag("Smoothing", smoothing)
        if isinstance(smoothing, dict):
            unknown = sorted(set(smoothing) - set(SMOOTHING_KEYS))
            if unknown:
                raise ConfigurationError(f"unknown Smoothing keys: {', '.join(unknown)} (use {', '.join(SMOOTHING_KEYS)})")
            smoothing = {key: _positive(f"Smoothing.{key}", value, allow_zero=key == "Beta")
                         for key, value in smoothing.items()}
        elif not isinstance(smoothing, bool):
            raise ConfigurationError(f"Smoothing must be false, true or an object with {', '.join(SMOOTHING_KEYS)}; "
                                     f"got {self.Smoothing!r}")
        if smoothing is not False and not tracking:
            if smoothing is not True:
                raise ConfigurationError("Smoothing needs Tracking: smoothing is done per track")
            smoothing = False  # the default follows Tracking off
        workers = self.Workers
        if workers in (None, "", "auto"):
            workers = "auto"
        else:
            try:
                workers = _int("Workers", workers, minimum=1, maximum=MAX_WORKERS)
            except ConfigurationError:
                raise ConfigurationError(f"Workers must be an integer between 1 and {MAX_WORKERS} or \"auto\", "
                                         f"got {self.Workers!r}") from None
        return {"Backend": _text("Backend", self.Backend).lower(), "ModelDir": _text("ModelDir", self.ModelDir, optional=True),
                "PageFrames": _int("PageFrames", self.PageFrames, minimum=1, maximum=100_000),
                "Tracking": tracking, "Smoothing": smoothing, "Workers": workers,
                "Pipeline": _flag("Pipeline", self.Pipeline),
                "EndpointBatch": _int("EndpointBatch", self.EndpointBatch, minimum=1, optional=True)}

    @property
    def smoothed(self) -> bool:
        return self.Smoothing is not False

    def one_euro(self):
        """The One-Euro filter settings (``mie_pose.tracking.OneEuroConfig``), or None with smoothing off."""
        if not self.smoothed:
            return None
        from ..tracking.smoothing import OneEuroConfig  # noqa: PLC0415  (numpy: operators only)

        given = self.Smoothing if isinstance(self.Smoothing, dict) else {}
        names = {"MinCutoff": "min_cutoff", "Beta": "beta", "DCutoff": "d_cutoff"}
        return OneEuroConfig(**{names[key]: value for key, value in given.items()})


CONFIGURATIONS: dict[str, type[OperatorConfiguration]] = {
    FrameExtractionConfiguration.OPERATOR: FrameExtractionConfiguration,
    PoseDetectionConfiguration.OPERATOR: PoseDetectionConfiguration,
}

# Where the AWS stack's defaults differ: the pose network runs behind the SageMaker endpoint.
AWS_DEFAULTS: dict[str, dict] = {"PoseDetection": {"Backend": "sagemaker"}}


def configuration_class(operator: str) -> type[OperatorConfiguration]:
    try:
        return CONFIGURATIONS[operator]
    except KeyError:
        raise ConfigurationError(f"unknown operator {operator!r} (known: {', '.join(sorted(CONFIGURATIONS))})") from None


def parse(operator: str, raw: dict | None, *, aws: bool = False) -> OperatorConfiguration:
    """The operator's typed Configuration: its defaults (the AWS ones with ``aws``), then ``raw``."""
    merged = dict(AWS_DEFAULTS.get(operator, {})) if aws else {}
    merged.update(raw or {})
    return configuration_class(operator).parse(merged)


def defaults(operator: str, *, aws: bool = False) -> dict:
    """Every setting of the operator with its default value."""
    return parse(operator, {}, aws=aws).to_dict()


def resolve(operator: str, raw: dict | None, *, aws: bool = False) -> dict:
    """Defaults and ``raw``, validated, as the plain dict an operator event carries."""
    return parse(operator, raw, aws=aws).to_dict()


def validate_overrides(configuration: dict | None, operators: list[str] | None = None,
                       stages: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """A workflow execution's Configuration as ``{operator: overrides}``, each override validated.

    Accepts ours (``{operator: {...}}``) and MIE's (``{stage: {operator: {...}}}``, with ``stages``
    mapping stage names to their operators). Raises ConfigurationError naming what is wrong.
    """
    if configuration is None:
        return {}
    if not isinstance(configuration, dict):
        raise ConfigurationError("Configuration must map operator (or stage) names to objects")
    operators = list(operators if operators is not None else CONFIGURATIONS)
    stages = stages or {}
    flat: dict[str, dict] = {}
    for name, values in configuration.items():
        if not isinstance(values, dict):
            raise ConfigurationError(f"Configuration.{name} must be an object")
        if name in stages:
            for operator, overrides in values.items():
                if operator not in stages[name]:
                    raise ConfigurationError(f"stage {name} does not run operator {operator}")
                if not isinstance(overrides, dict):
                    raise ConfigurationError(f"Configuration.{name}.{operator} must be an object")
                flat.setdefault(operator, {}).update(overrides)
        elif name in operators:
            flat.setdefault(name, {}).update(values)
        else:
            raise ConfigurationError(f"Configuration names {name}, which is neither an operator nor a stage "
                                     "of this workflow")
    for operator, overrides in flat.items():
        if operator in CONFIGURATIONS:
            parse(operator, overrides)
    return flat
