"""Ready-made networks: an MLP for flat samples, and convolutional networks for 28x28x1
(Fashion-MNIST) and 32x32x3 (CIFAR) images; a small zoo of them pretrained on Fashion-MNIST.

    model = fastnn.models.mlp()                              # the CLI's 784-256-128-10 MLP
    model = fastnn.models.mlp(pretrained=True)               # ... with the shipped Fashion-MNIST weights
    model = fastnn.models.simple_cnn()                       # BENCH.md's CNN, 421,738 parameters
    model = fastnn.models.simple_cnn(pretrained=True)        # ... with the shipped Fashion-MNIST weights
    model = fastnn.models.resnet(20, 16)                     # CIFAR ResNet-20, 272,186 parameters
    model = fastnn.models.densenet(12, (16, 16, 16))         # DenseNet-BC L=100 k=12, 768,730 parameters
    model = fastnn.models.densenet(in_channels=3, input_size=32)   # ... for 32x32 RGB images

Each returns an ``nn.Sequential`` of built-in layers (save/load, fit's C++ loop, fold_batchnorm and
torch-compatible state_dict names work on it), in float32 unless ``dtype=np.float64``.
``pretrained_info(name)`` says how the shipped weights were trained and their test accuracy.
"""

from ._pretrained import pretrained_info
from .cnn import simple_cnn
from .densenet import densenet
from .mlp import mlp
from .resnet import resnet

__all__ = ["densenet", "mlp", "pretrained_info", "resnet", "simple_cnn"]
