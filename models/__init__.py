"""dcopt's domain: the instance schema, the built-in catalog and the performance formulas."""

from .loader import InstanceError, default_catalog, instance_from_dict, load_instance
from .presets import PRESETS, resolve_model
from .schema import Accelerator, Catalog, Fabric, Instance, ModelDims, StorageTier, TrainingJob

__all__ = [
    "Accelerator", "Catalog", "Fabric", "Instance", "InstanceError", "ModelDims", "PRESETS",
    "StorageTier", "TrainingJob", "default_catalog", "instance_from_dict", "load_instance", "resolve_model",
]
