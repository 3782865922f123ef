"""Data sets as NumPy arrays: IDX files (the MNIST format) and Fashion-MNIST.

    (X_train, y_train), (X_test, y_test) = fastnn.datasets.fashion_mnist()   # (N, 784) float32 in [0, 1]
    (X_train, y_train), _ = fastnn.datasets.fashion_mnist(flatten=False)    # images (N, 1, 28, 28), for CNNs
    fastnn.datasets.fashion_mnist_source()        # which directory that read (or the bundled subset's)
    fastnn.datasets.FASHION_MNIST_CLASSES[y]      # label -> name
    a = fastnn.datasets.load_idx("t10k-labels-idx1-ubyte.gz")
"""

from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import fashion_mnist, fashion_mnist_source
from .idx import load_idx, save_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "fashion_mnist",
    "fashion_mnist_source",
    "load_idx",
    "save_idx",
]
