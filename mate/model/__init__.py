"""mate.model: the MATE model (motion encoder/decoder, word localisation, losses) and the
segmentation costs computed from a trained retrieval model."""
from .mate_model import LossWeights, MATEConfig, MATEModel, WordQueryAttention
from .motion import MotionDecoder, MotionEncoder, reconstruction_loss, sinusoidal_positions

__all__ = ["LossWeights", "MATEConfig", "MATEModel", "MotionDecoder", "MotionEncoder", "WordQueryAttention",
           "reconstruction_loss", "sinusoidal_positions"]
