"""Prediction and simulation from fitted models."""
from .predict import predict
from .simulate import simulate

__all__ = ["predict", "simulate"]
