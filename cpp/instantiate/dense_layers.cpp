// The dense and pointwise layers, compiled once per module (FASTNN_COMPILED_ONCE in layers/layer.h).
#include "fastnn/layers/activation.h"
#include "fastnn/layers/batchnorm.h"
#include "fastnn/layers/batchnorm_activation.h"
#include "fastnn/layers/dropout.h"
#include "fastnn/layers/layer.h"
#include "fastnn/layers/linear.h"
#include "fastnn/layers/shape_layers.h"

FASTNN_COMPILE_HERE(fastnn::Layer)
FASTNN_COMPILE_HERE(fastnn::PointwiseActivation)
FASTNN_COMPILE_HERE(fastnn::PReLU)
FASTNN_COMPILE_HERE(fastnn::RReLU)
FASTNN_COMPILE_HERE(fastnn::Softmax)
FASTNN_COMPILE_HERE(fastnn::Maxout)
FASTNN_COMPILE_HERE(fastnn::BatchNorm)
FASTNN_COMPILE_HERE(fastnn::FusedBatchNormActivation)
FASTNN_COMPILE_HERE(fastnn::Dropout)
FASTNN_COMPILE_HERE(fastnn::Linear)
FASTNN_COMPILE_HERE(fastnn::FusedLinearActivation)
FASTNN_COMPILE_HERE(fastnn::Identity)
FASTNN_COMPILE_HERE(fastnn::Flatten)
