// The convolution and pooling layers, compiled once per module (FASTNN_COMPILED_ONCE in layers/layer.h).
#include "fastnn/layers/conv.h"
#include "fastnn/layers/conv_batchnorm.h"
#include "fastnn/layers/conv_relu.h"
#include "fastnn/layers/pool.h"

FASTNN_COMPILE_HERE(fastnn::Conv2d)
FASTNN_COMPILE_HERE(fastnn::FusedConvBatchNorm)
FASTNN_COMPILE_HERE(fastnn::FusedConvBatchNormPool)
FASTNN_COMPILE_HERE(fastnn::FusedConvRelu)
FASTNN_COMPILE_HERE(fastnn::MaxPool2d)
FASTNN_COMPILE_HERE(fastnn::WindowMeanLayer)
FASTNN_COMPILE_HERE(fastnn::AvgPool2d)
FASTNN_COMPILE_HERE(fastnn::AdaptiveAvgPool2d)
FASTNN_COMPILE_HERE(fastnn::GlobalAvgPool2d)
