"""The one shared library of networks and checkpoint loaders (see docs/CONTRACTS.md).

`models.load(path)` is the only way the runtime, training and editing read a model.
"""
from models.loader import Bundle, CheckpointError, default_device, load, read_checkpoint, save

__all__ = ["Bundle", "CheckpointError", "default_device", "load", "read_checkpoint", "save"]
