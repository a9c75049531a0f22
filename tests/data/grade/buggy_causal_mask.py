"""hw4lib masks submission whose CausalMask is off by one (it masks the diagonal too)."""
import numpy as np

from hw4lib_student import PadMask  # noqa: F401


def CausalMask(padded_input):
    T = padded_input.shape[1]
    return np.triu(np.ones((T, T), dtype=bool), k=0)  # BUG: k=0 hides each token from itself
