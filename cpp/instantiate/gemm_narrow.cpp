// gemm()'s narrow kernel, compiled once per module (the extern templates in kernels/gemm_narrow.h).
#include "fastnn/kernels/gemm_narrow.h"

namespace fastnn::narrow_detail {

template void strided_rows<float>(const float*, index_t, const float*, index_t, float*, index_t, index_t, index_t,
                                  index_t, index_t, bool);
template void strided_rows<double>(const double*, index_t, const double*, index_t, double*, index_t, index_t,
                                   index_t, index_t, index_t, bool);

}  // namespace fastnn::narrow_detail
