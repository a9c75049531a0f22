"""NumPy-facing functions for every C kernel.

Each function takes arrays (float32 or float64; token ids of any integer dtype), keeps
their dtype, validates its arguments (TypeError/ValueError/IndexError naming the argument)
and runs in C with the GIL released. Forward functions return outputs; ``*_backward``
functions take the upstream gradient first, then the forward's inputs, and return the
gradients. In-place updates (optimizers) end in an underscore.
"""
from .linear import gemm, linear, linear_backward, matmul, matmul_backward
from .activation import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .layernorm import *  # noqa: F401,F403
from .rmsnorm import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .position import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .rope import *  # noqa: F401,F403
from .moe import *  # noqa: F401,F403
