"""mate.data: datasets (``mate.data.dataset``), motion features (``mate.data.features``,
``mate.data.skeleton``) and the synthetic benchmark (``mate.data.synthetic``)."""
from .dataset import MotionTextDataset, collate_motion_text
from .features import joints_to_features, recover_joints

__all__ = ["MotionTextDataset", "collate_motion_text", "joints_to_features", "recover_joints"]
