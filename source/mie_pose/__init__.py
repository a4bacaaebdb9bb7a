"""mie-pose: pose detection on video assets, built the way AWS Media Insights Engine builds media analysis."""

__version__ = "0.1.0"
