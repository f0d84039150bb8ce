#include "ce_contenders.hpp"

#include <lossjit/lossjit.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace bench {

namespace {

using namespace lossjit::dsl;
constexpr auto u = logits<"u">;
constexpr auto y = label<"y">;
constexpr auto ce = -log(at(softmax(u), y));

// Outputs to NaN before the checked run, so that a contender that writes nothing fails.
void poison(Buffer<float>& v) { std::fill(v.begin(), v.end(), NAN); }
void poison(Buffer<lossjit::bf16>& v) { std::fill(v.begin(), v.end(), lossjit::bf16{0x7fc0}); }

std::function<std::string(double)> loss_check(const Data& d) {
    return [&d](double v) { return check_loss(v, d); };
}
// a fwdbwd contender: its mean loss, then the gradient it wrote into g
template <class G>
std::function<std::string(double)> loss_and_grad_check(const Data& d, const G* g) {
    return [&d, g](double v) {
        std::string e = check_loss(v, d);
        return e.empty() ? check_grad(g, d) : e;
    };
}

}  // namespace

LossjitGraphs lower_cross_entropy() { return {lossjit::lower(ce), lossjit::lower(ce, lossjit::wrt(u))}; }

std::string LossjitGraphs::formula() const {
    std::string f = lossjit::to_string(ce) + "  ->";
    for (const auto& o : fwdbwd.outputs()) f += "  " + std::string(o.name.view()) + " = " + lossjit::to_string(fwdbwd, o.root) + ";";
    return f;
}

Peers start_peers() {
    Peers p;
    p.torch.text = "bench_ce was built without libtorch (not found by CMake: Debian libtorch-dev; or LOSSJIT_BENCH_NO_TORCH)";
    p.dnnl.text = "bench_ce was built without oneDNN (not found by CMake: Debian libdnnl-dev; or LOSSJIT_BENCH_NO_DNNL)";
#ifdef LOSSJIT_BENCH_HAVE_TORCH
    try {
        p.torch.text = torch_peer::info();
        p.torch.ready = true;
    } catch (const std::exception& e) {
        p.torch.text = std::string("libtorch failed to start: ") + e.what();
    }
#endif
#ifdef LOSSJIT_BENCH_HAVE_DNNL
    try {
        p.dnnl.text = dnnl_peer::info();
        p.dnnl.ready = true;
    } catch (const std::exception& e) {
        p.dnnl.text = std::string("oneDNN failed to start: ") + e.what();
    }
#endif
    return p;
}

ShapeBench::ShapeBench(const Shape& s, std::uint64_t seed, const LossjitGraphs& graphs, const Peers& peers, Results& results)
    : shape_(s), peers_(peers) {
    make_data(d_, s, seed);
    for (int b = 0; b < 2; ++b)
        for (int fb = 0; fb < 2; ++fb) {
            lossjit::CompileOptions o;
            o.row_length = s.K;
            o.dtype = b ? lossjit::DType::bf16 : lossjit::DType::f32;
            try {
                const auto t0 = std::chrono::steady_clock::now();
                kern_[b][fb] = lossjit::compile(fb ? graphs.fwdbwd : graphs.fwd, o);
                if (results.first_compile_ms < 0) {
                    results.first_compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                    results.first_from_disk = kern_[b][fb].from_disk_cache();
                    results.kernel_cpu = kern_[b][fb].cpu();
                }
            } catch (const std::exception& e) {
                kern_err_[b][fb] = e.what();
            }
        }
#ifdef LOSSJIT_BENCH_HAVE_DNNL
    if (peers.dnnl.ready) try {
            dnnl_ = std::make_unique<dnnl_peer::LogSoftmax>(s.N, s.K);
        } catch (const std::exception& e) {
            dnnl_err_ = e.what();
        }
#endif
}

ShapeBench::~ShapeBench() = default;

void ShapeBench::add_row(const Row& row, Results& results) {
    add_lossjit(row, results);
    if (!row.bf16()) {  // the peers take fp32 logits only
        add_cpp(row);
        add_torch(row, results);
        if (!row.fwdbwd()) add_dnnl(row, results);  // oneDNN has no cross-entropy backward
    }
    add_rooflines(row);
}

// Records GB/s of fp32 logits (N * K * 4 bytes), whatever the row's dtype.
void ShapeBench::measure(const Settings& st, Results& results) {
    std::vector<std::string> why;
    const std::vector<double> sec = bench::measure(st, cells_, why);
    for (std::size_t i = 0; i < cells_.size(); ++i) {
        const Row& row = cells_[i].row;
        const double bytes = static_cast<double>(row.shape.N * row.shape.K) * 4.0;
        results.record(cells_[i].contender, row, std::isnan(sec[i]) ? nan_v : bytes / sec[i] / 1e9, why[i]);
    }
    cells_.clear();
}

void ShapeBench::add_lossjit(const Row& row, Results& results) {
    const bool b16 = row.bf16(), fb = row.fwdbwd();
    const std::size_t N = shape_.N, K = shape_.K;
    if (!kern_err_[b16][fb].empty()) return results.record("lossjit", row, nan_v, "compile: " + kern_err_[b16][fb]);
    lossjit::Batch batch;
    if (b16) batch.bind("u", lossjit::matrix(static_cast<const lossjit::bf16*>(d_.xb.data()), N, K));
    else batch.bind("u", lossjit::matrix(static_cast<const float*>(d_.x.data()), N, K));
    batch.bind("y", lossjit::column(static_cast<const std::int64_t*>(d_.y.data()), N)).threads(row.threads);
    Contender c;
    if (fb) {
        if (b16) batch.bind("grad.u", lossjit::matrix(d_.gb.data(), N, K));
        else batch.bind("grad.u", lossjit::matrix(d_.g.data(), N, K));
        batch.scale("grad.u", 1.0 / static_cast<double>(N));
        c.poison = [this, b16] { b16 ? poison(d_.gb) : poison(d_.g); };
        c.verify = b16 ? loss_and_grad_check(d_, d_.gb.data()) : loss_and_grad_check(d_, d_.g.data());
    } else {
        c.verify = loss_check(d_);
    }
    const lossjit::Kernel& k = kern_[b16][fb];
    c.run = [&k, batch, N] { return k.run(batch).sum("loss") / static_cast<double>(N); };
    cells_.push_back({"lossjit", row, c});
}

void ShapeBench::add_cpp(const Row& row) {
    const std::size_t N = shape_.N, K = shape_.K;
    const float inv_n = 1.0f / static_cast<float>(N);
    const int T = row.threads;
    for (const std::string name : {"naive", "careful"}) {
        const bool careful = name == "careful";
        Contender c;
        if (row.fwdbwd()) {
            c.poison = [this] { poison(d_.g); };
            c.run = [this, careful, T, N, K, inv_n] {
                return split(T, N, [&](std::size_t r0, std::size_t r1) {
                           return careful ? careful_fwdbwd(d_.x.data(), d_.y.data(), d_.g.data(), r0, r1, K, inv_n)
                                          : naive_fwdbwd(d_.x.data(), d_.y.data(), d_.g.data(), r0, r1, K, inv_n);
                       }) /
                       static_cast<double>(N);
            };
            c.verify = loss_and_grad_check(d_, d_.g.data());
        } else {
            c.run = [this, careful, T, N, K] {
                return split(T, N, [&](std::size_t r0, std::size_t r1) {
                           return careful ? careful_fwd(d_.x.data(), d_.y.data(), r0, r1, K) : naive_fwd(d_.x.data(), d_.y.data(), r0, r1, K);
                       }) /
                       static_cast<double>(N);
            };
            c.verify = loss_check(d_);
        }
        cells_.push_back({name, row, c});
    }
}

void ShapeBench::add_torch(const Row& row, Results& results) {
    if (!peers_.torch.ready) return results.skip("pytorch", row);
#ifdef LOSSJIT_BENCH_HAVE_TORCH
    const std::size_t N = shape_.N, K = shape_.K;
    Contender c;
    c.enter = [T = row.threads] { torch_peer::set_threads(T); };
    if (row.fwdbwd()) {
        bool checking = true;
        c.poison = [this] { poison(d_.g); };
        c.run = [this, N, K, checking]() mutable {
            const double v = torch_peer::fwdbwd(d_.x.data(), d_.y.data(), N, K, checking ? d_.g.data() : nullptr);
            checking = false;  // only the checked run copies the gradient out
            return v;
        };
        c.verify = loss_and_grad_check(d_, d_.g.data());
    } else {
        c.run = [this, N, K] { return torch_peer::fwd(d_.x.data(), d_.y.data(), N, K); };
        c.verify = loss_check(d_);
    }
    cells_.push_back({"pytorch", row, c});
#endif
}

void ShapeBench::add_dnnl(const Row& row, Results& results) {
    if (!peers_.dnnl.ready) return results.skip("onednn", row);
#ifdef LOSSJIT_BENCH_HAVE_DNNL
    if (!dnnl_) return results.record("onednn", row, nan_v, "primitive creation: " + dnnl_err_);
    Contender c;
    c.poison = [this] { poison(d_.out); };
    c.run = [this, T = row.threads] { return dnnl_->run(d_.x.data(), d_.y.data(), d_.out.data(), T); };
    c.verify = loss_check(d_);
    cells_.push_back({"onednn", row, c});
#endif
}

// The rooflines, on the buffers of the row's dtype.
void ShapeBench::add_rooflines(const Row& row) {
    const bool b16 = row.bf16();
    const int T = row.threads;
    const std::size_t n = shape_.N * shape_.K;
    {
        Contender c;
        c.run = [this, T, n, b16] {
            return split(T, n, [&](std::size_t i0, std::size_t i1) {
                return b16 ? roof_read_bf16(reinterpret_cast<const std::uint16_t*>(d_.xb.data()) + i0, i1 - i0)
                           : roof_read_f32(d_.x.data() + i0, i1 - i0);
            });
        };
        c.verify = [this](double v) -> std::string {
            if (std::fabs(v - d_.sum_x) <= 1e-5 * d_.sum_abs_x) return "";
            return "sum " + std::to_string(v) + ", reference " + std::to_string(d_.sum_x);
        };
        cells_.push_back({"read", row, c});
    }
    {
        Contender c;
        c.poison = [this, b16] { b16 ? poison(d_.outb) : poison(d_.out); };
        c.run = [this, T, n, b16] {
            return split(T, n, [&](std::size_t i0, std::size_t i1) {
                if (b16)
                    roof_copy_bf16(reinterpret_cast<const std::uint16_t*>(d_.xb.data()) + i0, reinterpret_cast<std::uint16_t*>(d_.outb.data()) + i0,
                                   i1 - i0);
                else roof_copy_f32(d_.x.data() + i0, d_.out.data() + i0, i1 - i0);
                return 0.0;
            });
        };
        c.verify = [this, b16, n](double) -> std::string {
            const bool same = b16 ? std::memcmp(d_.xb.data(), d_.outb.data(), n * 2) == 0 : std::memcmp(d_.x.data(), d_.out.data(), n * 4) == 0;
            return same ? "" : "the copy differs from its source";
        };
        cells_.push_back({"copy", row, c});
    }
}

}  // namespace bench
