"""Errors raised by facetrack's runtime backends.

All are ``ValueError`` / ``RuntimeError`` subclasses so callers that do not care about the
distinction can catch the builtin; the messages are one line and name the file or tensor.
"""
from __future__ import annotations


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, not a model, or not a facetrack model of a
    known kind. The message names the file and the problem."""


class FeedError(ValueError):
    """An ``infer`` feed that does not match the model's declared inputs; the message names
    the tensor and the problem."""


class BackendUnavailableError(RuntimeError):
    """A runtime that was asked for explicitly cannot run here (library missing, no GPU);
    facetrack never switches to another device behind the caller's back."""
