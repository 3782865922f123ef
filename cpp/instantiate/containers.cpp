// The containers, compiled once per module (FASTNN_COMPILED_ONCE in layers/layer.h).
#include "fastnn/net/concat.h"
#include "fastnn/net/container.h"
#include "fastnn/net/dense_block.h"
#include "fastnn/net/residual.h"
#include "fastnn/net/sequential.h"

FASTNN_COMPILE_HERE(fastnn::Container)
FASTNN_COMPILE_HERE(fastnn::Sequential)
FASTNN_COMPILE_HERE(fastnn::Residual)
FASTNN_COMPILE_HERE(fastnn::Concat)
FASTNN_COMPILE_HERE(fastnn::DenseBlock)
