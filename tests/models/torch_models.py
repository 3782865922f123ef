"""The fastnn.models networks written in torch (torchvision's _DenseLayer/_DenseBlock/_Transition
and BasicBlock structure), for comparing parameter counts, outputs and gradients."""

import math

import torch
from torch import nn


def simple_cnn(in_channels=1, num_classes=10, input_size=28, dropout=0.5):
    layers = []
    for c_in, c_out in ((in_channels, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Linear(64 * (input_size // 4) ** 2, 128), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(128, num_classes))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def resnet(depth=20, width=16, in_channels=1, num_classes=10):
    n = (depth - 2) // 6
    layers = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c = width
    for stage in range(3):
        c_out = width << stage
        for i in range(n):
            layers.append(BasicBlock(c, c_out, 2 if (stage and i == 0) else 1))
            c = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


class DenseLayer(nn.Module):
    def __init__(self, c_in, growth_rate, bn_size, drop_rate):
        super().__init__()
        mid = c_in if bn_size is None else bn_size * growth_rate
        if bn_size is not None:
            self.norm1, self.relu1, self.conv1 = nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, mid, 1, bias=False)
            self.norm2, self.relu2 = nn.BatchNorm2d(mid), nn.ReLU()
            self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        else:
            self.norm1, self.relu1 = nn.BatchNorm2d(c_in), nn.ReLU()
            self.conv1 = nn.Conv2d(c_in, growth_rate, 3, padding=1, bias=False)
        self.bottleneck = bn_size is not None
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()

    def forward(self, x):
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        return self.drop(out)


class DenseBlock(nn.Module):
    def __init__(self, num_layers, c_in, growth_rate, bn_size=4, drop_rate=0.0):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * growth_rate, growth_rate, bn_size, drop_rate))

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def transition(c_in, c_out):
    t = nn.Sequential()
    for name, m in (("norm", nn.BatchNorm2d(c_in)), ("relu", nn.ReLU()), ("conv", nn.Conv2d(c_in, c_out, 1, bias=False)),
                    ("pool", nn.AvgPool2d(2))):
        t.add_module(name, m)
    return t


def densenet(growth_rate=12, block_config=(16, 16, 16), bottleneck=True, compression=0.5, drop_rate=0.0,
             in_channels=1, num_classes=10):
    c = 2 * growth_rate if bottleneck else 16
    features = nn.Sequential()
    features.add_module("conv0", nn.Conv2d(in_channels, c, 3, padding=1, bias=False))
    for i, layers in enumerate(block_config):
        features.add_module(f"denseblock{i + 1}", DenseBlock(layers, c, growth_rate, 4 if bottleneck else None,
                                                             drop_rate))
        c += layers * growth_rate
        if i + 1 < len(block_config):
            c_out = max(1, math.floor(compression * c))
            features.add_module(f"transition{i + 1}", transition(c, c_out))
            c = c_out
    for name, m in (("norm5", nn.BatchNorm2d(c)), ("relu5", nn.ReLU()), ("pool5", nn.AdaptiveAvgPool2d(1))):
        features.add_module(name, m)
    model = nn.Sequential()
    for name, m in (("features", features), ("flatten", nn.Flatten()), ("classifier", nn.Linear(c, num_classes))):
        model.add_module(name, m)
    return model


def count(model):
    return sum(p.numel() for p in model.parameters())
