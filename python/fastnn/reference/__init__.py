"""NumPy reference implementations: the executable specification of every C++ kernel.

One module per kernel header, same stem (``cpp/include/fastnn/kernels/gemm.h`` ->
``reference/gemm.py``). They are written to read like the formulas in SPEC.md, not to be fast.
Each function has the signature and return convention of its :mod:`fastnn.functional` twin.
"""

from . import optim, rng
from .activations import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .maxout import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .batchnorm_activation import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .gemm import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .linear_rop import *  # noqa: F401,F403
from .linear_loss import *  # noqa: F401,F403
from .im2col import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .conv_winograd import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .batchnorm_rop import *  # noqa: F401,F403
from .loss_hessian import *  # noqa: F401,F403
from .finite import *  # noqa: F401,F403
from .augment import *  # noqa: F401,F403
