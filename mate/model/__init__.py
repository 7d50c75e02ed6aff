"""mate.model: the MATE model (motion encoder/decoder, word localisation: ``mate_model``), its
losses named like the paper (``losses``) and the segmentation costs computed from a trained
retrieval model (``segmentation``)."""
from .losses import LOSS_NAMES, Losses, mate_loss, reconstruction_loss
from .mate_model import MATEConfig, MATEFeatures, MATEModel, WordFeatures, WordQueryAttention
from .motion import MotionDecoder, MotionEncoder, sinusoidal_positions

__all__ = ["LOSS_NAMES", "Losses", "MATEConfig", "MATEFeatures", "MATEModel", "MotionDecoder", "MotionEncoder",
           "WordFeatures", "WordQueryAttention", "mate_loss", "reconstruction_loss", "sinusoidal_positions"]
