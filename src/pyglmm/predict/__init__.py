"""Prediction and simulation from fitted models."""
from .simulate import simulate

__all__ = ["simulate"]
