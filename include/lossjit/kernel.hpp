// compile() and Kernel: a Graph (loss and gradients as named outputs) becomes one fused,
// vectorized machine-code kernel for this CPU (defined in jit/, built on LLVM ORC), then runs
// over a batch of rows on all cores.
//
//     lossjit::CompileOptions opt;
//     opt.row_length = K;                                  // 0: one kernel for any K
//     lossjit::Kernel k = lossjit::compile(graph, opt);    // a lookup the second time
//     lossjit::Batch b;
//     b.bind("u", lossjit::matrix(logits, N, K))           // inputs by name
//      .bind("y", lossjit::column(labels, N))
//      .bind("grad.u", lossjit::matrix(grad, N, K))        // vector outputs: required
//      .bind("loss", lossjit::column(row_loss, N));        // scalar outputs: optional
//     lossjit::Result r = k.run(b);                        // r.sum("loss"): sum over rows
//
// Batch semantics, as PyTorch's F.cross_entropy (see Batch below):
//     b.reduction(lossjit::Reduction::mean);  // none (default) | sum | mean: scales the gradients
//     b.ignore_index(-100);                   // the default for kernels with a label input
//     b.weighted_mean("w");                   // mean dividing by the sum of w[y] (weight=)
//     double loss = k.run(b).loss();          // the reduced loss
//
// This header does not include LLVM; it compiles alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lossjit/error.hpp"
#include "lossjit/graph.hpp"

namespace lossjit {

// Element types of bound arrays. Floating types are for vectors and per-row scalars; integer
// types for labels.
enum class DType : std::uint8_t { f32, f64, bf16, i32, i64 };

constexpr std::string_view to_string(DType d) {
    switch (d) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    }
    return "?";
}
constexpr std::size_t size_of(DType d) {
    return d == DType::f64 || d == DType::i64 ? 8 : d == DType::bf16 ? 2 : 4;
}

// bfloat16 storage: the upper 16 bits of an IEEE float. Conversion rounds to nearest even.
struct bf16 {
    std::uint16_t bits = 0;
    static bf16 from_float(float f) {
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<std::uint16_t>((u >> 16) | 0x40u)};  // NaN stays NaN
        u += 0x7fffu + ((u >> 16) & 1u);
        return bf16{static_cast<std::uint16_t>(u >> 16)};
    }
    float to_float() const {
        const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }

// A view of one bound array: `rows` rows of `cols` elements, row i at data + i * stride elements.
// cols == 1 for per-row values (labels, scalar inputs, per-row losses). stride 0 repeats one row
// for every row of the batch (class weights); then rows is 0, meaning "any".
struct Array {
    void* data = nullptr;
    DType dtype = DType::f32;
    std::size_t rows = 0, cols = 0;
    std::size_t stride = 0;
    bool writable = false;
};

// N rows of K values (logits, probabilities, gradients); stride in elements, 0 = K.
template <class T> Array matrix(T* p, std::size_t rows, std::size_t cols, std::size_t stride = 0) {
    using U = std::remove_const_t<T>;
    return Array{const_cast<U*>(p), dtype_of<U>(), rows, cols, stride == 0 ? cols : stride, !std::is_const_v<T>};
}
// One value per row (labels, per-row scalar inputs, per-row losses); stride in elements.
template <class T> Array column(T* p, std::size_t rows, std::size_t stride = 1) {
    using U = std::remove_const_t<T>;
    return Array{const_cast<U*>(p), dtype_of<U>(), rows, 1, stride, !std::is_const_v<T>};
}
// One row of K values shared by every row of the batch (row stride 0), e.g. class weights.
template <class T> Array shared_row(const T* p, std::size_t cols) {
    return Array{const_cast<T*>(p), dtype_of<T>(), 0, cols, 0, false};
}

struct CompileOptions {
    // Element type of vector inputs (logits, probs, weights) and vector outputs (gradients).
    // bf16: storage only, the math is fp32 and gradients are rounded once, at the store (twice
    // in a mean whose denominator a fully masked row changed: see Batch).
    DType dtype = DType::f32;
    // Per-binding element type overrides, e.g. {{"p", DType::f32}} for fp32 targets next to
    // bf16 logits.
    std::vector<std::pair<std::string, DType>> dtypes;
    DType label_dtype = DType::i64;  // i32 or i64
    // K baked into the kernel as a constant (specialized), compiled by compile(); 0 = any K,
    // given at run time: then a kernel for each range of row lengths where knowing it makes it
    // faster (rows of up to 32 elements across rows; one-block rows with the next row's max
    // ahead; long rows pipelined, with streaming stores: of a multiple of the vector width, of
    // one block, of several), and one for any length. Each run takes the one for its rows,
    // compiled at the first run that needs it (so a compile error can come from run());
    // schedule(), llvm_ir() and assembly() show them all.
    std::size_t row_length = 0;
    // Values of the graph's param inputs, fixed at compile time.
    std::vector<std::pair<std::string, double>> params;
    // logsumexp strategy: auto (by K), online (one pass, running max with rescaling), or
    // two-pass (max then sum while the block is in cache, blocks of `block` elements).
    enum class Lse : std::uint8_t { automatic, online, two_pass } lse = Lse::automatic;
    std::size_t block = 0;  // elements per block for long rows; 0 = from the L1/L2 size
    int unroll = 0;         // vectors per loop iteration; 0 = default
    // IR optimization: 0 none, 1 cleanup, 2 the kernel pipeline (kernels as fast as O3's, a quarter of
    // its compile time), 3 LLVM's O3
    int opt_level = 2;
    bool cache = true;      // use the in-process kernel cache (and disk cache if enabled)
};

// How the per-row losses of a batch combine, as PyTorch's `reduction=`. The per-row values
// written to a bound "loss" column are always the unreduced ones; the reduction decides
// Result::loss() and the factor every vector output (gradient) is multiplied by as it is stored:
//   none: the gradient of each row's own loss (PyTorch's backward of reduction='none' with a
//         gradient of ones); Result::loss() is the sum of the rows' losses.
//   sum:  the same gradients; Result::loss() is the sum.
//   mean: gradients times 1/D and Result::loss() = sum / D, where D is the number of counted
//         rows (neither ignored nor fully masked), or with weighted_mean("w") the sum of w[y]
//         over the counted rows (PyTorch's `weight=`; also with label smoothing). D = 0 (every
//         row ignored, or zero weights): loss 0 and gradients 0, not NaN (PyTorch gives NaN).
enum class Reduction : std::uint8_t { none, sum, mean };

constexpr std::string_view to_string(Reduction r) {
    return r == Reduction::none ? "none" : r == Reduction::sum ? "sum" : "mean";
}

// Bindings by name and run-time settings for one run.
//
// Rows a run skips: every output of a skipped row is 0 (loss, extra outputs, gradients), it
// adds nothing to the sums and is not counted in a mean; its inputs are not read past the label.
//   - ignored rows: a label input equals ignore_index (default -100, PyTorch's, for kernels with
//     a label input). Every other label must lie in [0, K).
//   - fully masked rows: a logsumexp the kernel computes is -inf (every logit of the row is -inf,
//     so no class is possible); PyTorch gives NaN there. Found inside the kernel; when it changes
//     the mean's denominator, the gradients already stored are rescaled (a pass only then;
//     the stored values are rounded a second time, half a unit of their type at most).
// A row with NaN among its inputs is not skipped: its loss and gradient are NaN. Errors raised
// before anything is written: a label outside [0, K) that is not ignore_index, a negative value
// in any bound weights input (class weights, BCE targets, pos_weight), naming input, row,
// element and value.
class Batch {
public:
    // Binds an input or an output of the kernel by name.
    Batch& bind(std::string_view name, Array a) {
        for (auto& [n, x] : arrays_)
            if (n == name) {
                x = a;
                return *this;
            }
        arrays_.emplace_back(std::string(name), a);
        return *this;
    }
    // Threads to use; 0 = all cores (a negative count is an error of run()). With more than one,
    // the rows run in chunks the threads take as they come free: per-row outputs and gradients
    // are the same bits for any thread count, the sums the same bits from run to run for one.
    Batch& threads(int n) {
        threads_ = n;
        return *this;
    }
    // Multiplies a vector output (a gradient) by `s` as it is stored (e.g. 1/N for a mean).
    Batch& scale(std::string_view output, double s) {
        scales_.emplace_back(std::string(output), s);
        return *this;
    }
    // none (default), sum or mean; see Reduction.
    Batch& reduction(Reduction r) {
        reduction_ = r;
        return *this;
    }
    // Rows whose label equals `v` are skipped (loss 0, gradient 0, not counted). The default,
    // -100, applies to kernels with a label input; setting it on a kernel without one is an error.
    Batch& ignore_index(std::int64_t v) {
        ignore_ = v;
        ignore_mode_ = Ignore::set;
        return *this;
    }
    // No label value is ignored: every label must lie in [0, K).
    Batch& no_ignore_index() {
        ignore_mode_ = Ignore::off;
        return *this;
    }
    // Reduction mean with PyTorch's class-weighted denominator: the sum of weights[label] over
    // the counted rows. `weights` names a weights input of the kernel (one row, or one per row);
    // `label` its label input, needed only when the kernel has several.
    Batch& weighted_mean(std::string_view weights, std::string_view label = {}) {
        reduction_ = Reduction::mean;
        mean_weights_ = std::string(weights);
        mean_label_ = std::string(label);
        return *this;
    }
    const std::vector<std::pair<std::string, Array>>& arrays() const { return arrays_; }
    const std::vector<std::pair<std::string, double>>& scales() const { return scales_; }
    int thread_count() const { return threads_; }
    Reduction reduction() const { return reduction_; }
    enum class Ignore : std::uint8_t { default_, set, off };
    Ignore ignore_mode() const { return ignore_mode_; }
    std::int64_t ignore_value() const { return ignore_mode_ == Ignore::set ? ignore_ : -100; }
    const std::string& mean_weights() const { return mean_weights_; }
    const std::string& mean_label() const { return mean_label_; }

private:
    std::vector<std::pair<std::string, Array>> arrays_;
    std::vector<std::pair<std::string, double>> scales_;
    int threads_ = 0;
    Reduction reduction_ = Reduction::none;
    Ignore ignore_mode_ = Ignore::default_;
    std::int64_t ignore_ = -100;
    std::string mean_weights_, mean_label_;
};

// What a run returns: the sum over rows of every scalar output (double accumulation), the
// counts of skipped rows and the reduced loss.
struct Result {
    std::size_t rows = 0;       // N
    std::size_t ignored = 0;    // rows skipped for ignore_index
    std::size_t masked = 0;     // rows skipped for a logsumexp of -inf
    std::size_t counted = 0;    // rows - ignored - masked
    double denominator = 0;     // what reduction mean divides by: counted, or the sum of w[y]
    Reduction reduction = Reduction::none;
    std::vector<std::pair<std::string, double>> sums;

    double sum(std::string_view name) const {
        for (auto& [n, s] : sums)
            if (n == name) return s;
        throw error("Result: no scalar output named '" + std::string(name) + "'");
    }
    // The sum over the counted rows divided by their number (0 when none is counted, unless
    // the sum is NaN).
    double mean(std::string_view name) const { return divide(sum(name), static_cast<double>(counted)); }
    // The output reduced as the batch asked: the sum (none, sum) or the sum / denominator (mean).
    double reduced(std::string_view name) const {
        return reduction == Reduction::mean ? divide(sum(name), denominator) : sum(name);
    }
    // The reduced loss: reduced("loss").
    double loss() const { return reduced("loss"); }

private:
    static double divide(double s, double d) { return d > 0 ? s / d : s != s ? s : 0.0; }
};

// One argument of a kernel, in the order the machine code receives them.
struct Slot {
    std::string name;
    InputKind kind = InputKind::logits;  // inputs; outputs: logits for vectors, scalar for per-row values
    bool output = false;
    bool vector = false;
    DType dtype = DType::f32;
};

namespace detail {
struct KernelImpl;
}

class Kernel {
public:
    Kernel() = default;
    // Runs over the batch; every argument is checked before anything is written.
    Result run(const Batch& b) const;

    const Graph& graph() const;
    std::string schedule() const;                       // the passes over a row
    std::string llvm_ir(bool optimized = false) const;  // before / after the IR pipeline
    std::string assembly() const;                       // for the host CPU
    const std::vector<Slot>& slots() const;
    std::size_t row_length() const;  // 0: generic
    DType dtype() const;
    std::string cpu() const;  // the CPU name the code was generated for

    bool from_memory_cache() const { return memory_hit_; }  // this compile() was a lookup
    bool from_disk_cache() const;                           // the machine code made so far came from LOSSJIT_CACHE_DIR
    double compile_ms() const;                              // time spent producing the machine code so far
    explicit operator bool() const { return impl_ != nullptr; }

private:
    friend Kernel compile(const Graph&, const CompileOptions&);
    std::shared_ptr<const detail::KernelImpl> impl_;
    bool memory_hit_ = false;
};

// Compiles the graph's outputs (scalar outputs: per-row values; vector outputs: per-row
// vectors) into one kernel. Thread-safe. Throws lossjit::error (LLVM's messages included).
Kernel compile(const Graph& g, const CompileOptions& options = {});

// Counters of this process's kernel cache.
struct CacheStats {
    std::uint64_t memory_hits = 0, compiles = 0, disk_hits = 0, disk_writes = 0, disk_rejected = 0;
};
CacheStats cache_stats();

}  // namespace lossjit
