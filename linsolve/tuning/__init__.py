"""Learning SOR's omega across a sequence of systems (Khodak et al., ICLR 2024)."""

from .omega import OmegaBandit, OmegaContextualBandit, young_omega

__all__ = ["OmegaBandit", "OmegaContextualBandit", "young_omega"]
