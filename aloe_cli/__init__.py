"""aloe: action-level off-policy evaluation for robot-learning logs."""

__version__ = "0.1.0"
