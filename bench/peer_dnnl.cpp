// oneDNN (Debian's libdnnl-dev, 2.6): softmax_v2 forward with algorithm::softmax_log, out of
// place, then the loss picked from the log-probabilities at the labels. oneDNN has no
// cross-entropy primitive and no fused backward for it, so it is a forward-only contender.
// Built only when CMake found dnnl.
#include <dnnl.hpp>
#include <omp.h>

#include "bench_peers.hpp"

namespace bench::dnnl_peer {

std::string info() {
    const dnnl_version_t* v = dnnl_version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
           (v->cpu_runtime == DNNL_RUNTIME_OMP ? ", OpenMP runtime" : ", non-OpenMP runtime");
}

struct LogSoftmax::Impl {
    std::size_t N, K;
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    dnnl::memory::desc md;
    dnnl::softmax_v2_forward::primitive_desc pd;
    dnnl::softmax_v2_forward prim;
    Impl(std::size_t n, std::size_t k)
        : N(n),
          K(k),
          md({static_cast<dnnl::memory::dim>(n), static_cast<dnnl::memory::dim>(k)}, dnnl::memory::data_type::f32,
             dnnl::memory::format_tag::ab),
          pd(dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::softmax_log, md, md, 1), eng),
          prim(pd) {}
};

LogSoftmax::LogSoftmax(std::size_t N, std::size_t K) : impl_(new Impl(N, K)) {}
LogSoftmax::~LogSoftmax() { delete impl_; }
std::string LogSoftmax::impl() const { return impl_->pd.impl_info_str(); }

double LogSoftmax::run(const float* x, const std::int64_t* y, float* dst, int threads) {
    omp_set_num_threads(threads);  // the OMP runtime: oneDNN uses omp_get_max_threads()
    Impl& m = *impl_;
    dnnl::memory src(m.md, m.eng, const_cast<float*>(x)), out(m.md, m.eng, dst);
    m.prim.execute(m.strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}});
    m.strm.wait();
    double total = 0;
    for (std::size_t r = 0; r < m.N; ++r) total -= dst[r * m.K + static_cast<std::size_t>(y[r])];
    return total / static_cast<double>(m.N);
}

}  // namespace bench::dnnl_peer
