"""MIE operators: frame extraction and pose inference, each a ``handler(event, context)``."""
