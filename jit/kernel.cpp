// compile() with the in-process kernel cache, and Kernel::run: argument checks, then threads
// over row blocks (OpenMP). No LLVM here.
#include "lossjit/kernel.hpp"

#include <omp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iostream>
#include <mutex>
#include <unordered_map>

#include "engine.hpp"
#include "schedule.hpp"

namespace lossjit {

namespace detail {
struct KernelImpl {
    Graph graph;
    jit::Plan plan;
    jit::Compiled code;
};
}  // namespace detail

namespace {

using Impl = std::shared_ptr<const detail::KernelImpl>;

// A cheap key over the graph as given (not compacted) and the options: no allocation.
inline std::uint64_t mix(std::uint64_t h, std::uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}
std::uint64_t words(std::uint64_t h, const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; i += 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, p + i, std::min<std::size_t>(8, n - i));
        h = mix(h, w);
    }
    return h;
}
std::uint64_t quick_hash(const Graph& g, const CompileOptions& o) {
    std::uint64_t h = 0x1234567;
    for (const Node& n : g.nodes()) {
        h = mix(h, static_cast<std::uint64_t>(n.op) | static_cast<std::uint64_t>(n.shape) << 8 | static_cast<std::uint64_t>(n.kind) << 16 |
                       static_cast<std::uint64_t>(static_cast<std::uint32_t>(n.a)) << 32);
        h = mix(h, static_cast<std::uint64_t>(static_cast<std::uint32_t>(n.b)) | static_cast<std::uint64_t>(n.name.length) << 32);
        h = mix(h, std::bit_cast<std::uint64_t>(n.value));
        h = words(h, n.name.text, n.name.length);
    }
    for (const Output& out : g.outputs()) h = words(mix(h, static_cast<std::uint64_t>(out.root)), out.name.text, out.name.length);
    h = mix(h, static_cast<std::uint64_t>(o.dtype) | static_cast<std::uint64_t>(o.label_dtype) << 8 | static_cast<std::uint64_t>(o.lse) << 16 |
                   static_cast<std::uint64_t>(o.opt_level) << 24 | static_cast<std::uint64_t>(o.unroll) << 32);
    h = mix(h, o.row_length);
    h = mix(h, o.block);
    for (auto& [n, v] : o.params) h = mix(words(h, n.data(), n.size()), std::bit_cast<std::uint64_t>(v));
    for (auto& [n, d] : o.dtypes) h = mix(words(h, n.data(), n.size()), static_cast<std::uint64_t>(d));
    return h;
}

bool same_options(const CompileOptions& a, const CompileOptions& b) {
    if (a.params.size() != b.params.size() || a.dtypes.size() != b.dtypes.size()) return false;
    for (std::size_t i = 0; i < a.params.size(); ++i)
        if (a.params[i].first != b.params[i].first ||
            std::bit_cast<std::uint64_t>(a.params[i].second) != std::bit_cast<std::uint64_t>(b.params[i].second))
            return false;
    for (std::size_t i = 0; i < a.dtypes.size(); ++i)
        if (a.dtypes[i] != b.dtypes[i]) return false;
    return a.dtype == b.dtype && a.label_dtype == b.label_dtype && a.row_length == b.row_length && a.lse == b.lse &&
           a.block == b.block && a.unroll == b.unroll && a.opt_level == b.opt_level;
}

struct Entry {
    Graph g;
    CompileOptions o;
    std::shared_future<Impl> impl;
};

struct Cache {
    std::mutex mu;
    std::unordered_multimap<std::uint64_t, Entry> map;
    std::atomic<std::uint64_t> hits{0}, compiles{0};
};
Cache& cache() {
    static Cache* c = new Cache;  // never destroyed: kernels may be used from static destructors
    return *c;
}

int debug_level() {
    static const int level = [] {
        const char* s = std::getenv("LOSSJIT_DEBUG");
        return s ? std::atoi(s) : 0;
    }();
    return level;
}

Impl build(const Graph& g, const CompileOptions& o) {
    auto impl = std::make_shared<detail::KernelImpl>();
    impl->graph = g;
    impl->plan = jit::make_plan(g, o, jit::host());
    std::string dir;
    if (o.cache)
        if (const char* d = std::getenv("LOSSJIT_CACHE_DIR"); d && *d) dir = d;
    const std::string key = jit::cache_key(impl->plan);
    impl->code = jit::build(impl->plan, key, dir);
    cache().compiles++;
    const int dl = debug_level();
    if (dl >= 2) {
        std::cerr << "lossjit: graph\n" << jit::graph_text(impl->plan.g) << "lossjit: schedule\n" << jit::to_string(impl->plan);
        std::cerr << "lossjit: machine code " << (impl->code.from_disk ? "loaded from the disk cache" : "compiled") << " in "
                  << impl->code.ms << " ms for " << jit::host().cpu << "\n";
    }
    if (dl >= 3) {
        std::cerr << "lossjit: LLVM IR before optimization\n" << jit::ir_text(impl->plan, false);
        std::cerr << "lossjit: LLVM IR after optimization\n" << jit::ir_text(impl->plan, true);
    }
    if (dl >= 4) std::cerr << "lossjit: assembly\n" << jit::asm_text(impl->plan);
    return impl;
}

const detail::KernelImpl& need(const std::shared_ptr<const detail::KernelImpl>& p) {
    if (!p) throw error("Kernel: this kernel is empty (default-constructed)");
    return *p;
}

}  // namespace

Kernel compile(const Graph& g, const CompileOptions& o) {
    Kernel k;
    if (!o.cache) {
        k.impl_ = build(g, o);
        return k;
    }
    Cache& c = cache();
    const std::uint64_t h = quick_hash(g, o);
    std::shared_future<Impl> fut;
    std::promise<Impl> mine;
    bool owner = false;
    {
        std::lock_guard<std::mutex> l(c.mu);
        auto [b, e] = c.map.equal_range(h);
        for (auto it = b; it != e; ++it)
            if (it->second.g.nodes() == g.nodes() && it->second.g.outputs() == g.outputs() && same_options(it->second.o, o)) {
                fut = it->second.impl;
                break;
            }
        if (!fut.valid()) {
            owner = true;
            fut = mine.get_future().share();
            c.map.emplace(h, Entry{g, o, fut});
        }
    }
    if (!owner) {
        k.impl_ = fut.get();  // rethrows the compile error of the thread that compiled it
        k.memory_hit_ = true;
        c.hits++;
        return k;
    }
    try {
        Impl impl = build(g, o);
        mine.set_value(impl);
        k.impl_ = std::move(impl);
        return k;
    } catch (...) {
        mine.set_exception(std::current_exception());
        std::lock_guard<std::mutex> l(c.mu);
        auto [b, e] = c.map.equal_range(h);
        for (auto it = b; it != e; ++it)
            if (it->second.g.nodes() == g.nodes() && it->second.g.outputs() == g.outputs() && same_options(it->second.o, o)) {
                c.map.erase(it);
                break;
            }
        throw;
    }
}

CacheStats cache_stats() {
    CacheStats s;
    s.memory_hits = cache().hits.load();
    s.compiles = cache().compiles.load();
    const jit::DiskCounters d = jit::disk_counters();
    s.disk_hits = d.hits;
    s.disk_writes = d.writes;
    s.disk_rejected = d.rejected;
    return s;
}

const Graph& Kernel::graph() const { return need(impl_).graph; }
std::string Kernel::schedule() const { return jit::to_string(need(impl_).plan); }
std::string Kernel::llvm_ir(bool optimized) const { return jit::ir_text(need(impl_).plan, optimized); }
std::string Kernel::assembly() const { return jit::asm_text(need(impl_).plan); }
const std::vector<Slot>& Kernel::slots() const { return need(impl_).plan.slots; }
std::size_t Kernel::row_length() const { return need(impl_).plan.K; }
DType Kernel::dtype() const {
    const auto& p = need(impl_).plan;
    for (const Slot& s : p.slots)
        if (s.vector && !s.output && s.kind == InputKind::logits) return s.dtype;
    return p.compute;
}
std::string Kernel::cpu() const { return jit::host().cpu; }
bool Kernel::from_disk_cache() const { return need(impl_).code.from_disk; }
double Kernel::compile_ms() const { return need(impl_).code.ms; }

// ---- run -------------------------------------------------------------------------------------

namespace {

std::string names(const std::vector<Slot>& slots) {
    std::string s;
    for (const Slot& x : slots) s += (s.empty() ? "" : ", ") + x.name;
    return s;
}

struct Range {
    const char* lo;
    const char* hi;
};
Range extent(const Array& a, std::size_t rows) {
    const std::size_t r = a.stride == 0 ? 1 : rows;
    const std::size_t elems = r == 0 ? 0 : (r - 1) * a.stride + a.cols;
    const char* p = static_cast<const char*>(a.data);
    return {p, p + elems * size_of(a.dtype)};
}

}  // namespace

Result Kernel::run(const Batch& batch) const {
    const detail::KernelImpl& k = need(impl_);
    const jit::Plan& p = k.plan;
    const std::size_t ns = p.slots.size();
    std::vector<const Array*> bound(ns, nullptr);
    for (auto& [name, a] : batch.arrays()) {
        std::size_t s = 0;
        while (s < ns && p.slots[s].name != name) ++s;
        if (s == ns) throw error("run: unknown binding '" + name + "'; the kernel has: " + names(p.slots));
        bound[s] = &a;
    }
    // shapes: N rows and K columns, agreed on by every binding
    std::size_t N = 0, K = 0;
    std::string n_from, k_from;
    for (std::size_t s = 0; s < ns; ++s) {
        const Slot& sl = p.slots[s];
        const Array* a = bound[s];
        if (!a) {
            if (!sl.output) throw error("run: missing binding for input '" + sl.name + "' (" + std::string(to_string(sl.kind)) + ")");
            if (sl.vector) throw error("run: missing binding for output '" + sl.name + "'");
            continue;
        }
        if (a->data == nullptr) throw error("run: '" + sl.name + "' is bound to a null pointer");
        if (a->dtype != sl.dtype)
            throw error("run: '" + sl.name + "' is bound to " + std::string(to_string(a->dtype)) + " data, the kernel expects " +
                        std::string(to_string(sl.dtype)));
        if (sl.output && !a->writable) throw error("run: output '" + sl.name + "' is bound to const data");
        if (!sl.vector && a->cols != 1)
            throw error("run: '" + sl.name + "' takes one value per row, but is bound to rows of " + std::to_string(a->cols));
        if (a->rows != 0 || a->stride != 0 || sl.output) {
            if (a->rows != 0 && !n_from.empty() && a->rows != N)
                throw error("run: shape mismatch: '" + sl.name + "' has " + std::to_string(a->rows) + " rows, '" + n_from + "' has " +
                            std::to_string(N));
            if (a->rows != 0 && n_from.empty()) {
                N = a->rows;
                n_from = sl.name;
            }
        }
        if (sl.vector) {
            if (!k_from.empty() && a->cols != K)
                throw error("run: shape mismatch: '" + sl.name + "' has rows of " + std::to_string(a->cols) + ", '" + k_from + "' has " +
                            std::to_string(K));
            if (k_from.empty()) {
                K = a->cols;
                k_from = sl.name;
            }
        }
    }
    if (k_from.empty()) K = p.K;
    if (K == 0) throw error("run: K = 0 (rows must have at least one element)");
    if (K > 0x7fffffffu) throw error("run: K = " + std::to_string(K) + " is too large");
    if (p.K != 0 && K != p.K)
        throw error("run: the kernel was specialized for K = " + std::to_string(p.K) + ", but the rows have K = " + std::to_string(K));
    for (std::size_t s = 0; s < ns; ++s) {
        const Array* a = bound[s];
        if (!a) continue;
        const Slot& sl = p.slots[s];
        const bool shared = a->stride == 0 && !sl.output;
        if (sl.vector && !shared && a->stride < K)
            throw error("run: '" + sl.name + "' has row stride " + std::to_string(a->stride) + " < K = " + std::to_string(K));
        if (!sl.vector && sl.output && a->stride == 0) throw error("run: output '" + sl.name + "' has stride 0");
    }
    // labels in [0, K)
    for (std::size_t s = 0; s < ns; ++s) {
        const Array* a = bound[s];
        if (!a || p.slots[s].kind != InputKind::label || p.slots[s].output) continue;
        for (std::size_t r = 0; r < N; ++r) {
            const std::int64_t y = a->dtype == DType::i32 ? static_cast<const std::int32_t*>(a->data)[r * a->stride]
                                                          : static_cast<const std::int64_t*>(a->data)[r * a->stride];
            if (y < 0 || static_cast<std::uint64_t>(y) >= K)
                throw error("run: label '" + p.slots[s].name + "' at row " + std::to_string(r) + " is " + std::to_string(y) +
                            ", outside [0, " + std::to_string(K) + ")");
        }
    }
    // outputs may overlap an input only exactly (in place: same pointer, stride and type)
    for (std::size_t o = 0; o < ns; ++o) {
        if (!bound[o] || !p.slots[o].output) continue;
        const Range ro = extent(*bound[o], N);
        for (std::size_t s = 0; s < ns; ++s) {
            if (s == o || !bound[s]) continue;
            const Array& a = *bound[s];
            const Range r = extent(a, N);
            if (ro.lo >= r.hi || r.lo >= ro.hi) continue;
            const bool exact = !p.slots[s].output && a.data == bound[o]->data && a.stride == bound[o]->stride && a.dtype == bound[o]->dtype &&
                               p.slots[s].vector && p.slots[o].vector;
            if (!exact)
                throw error("run: output '" + p.slots[o].name + "' overlaps '" + p.slots[s].name +
                            "' (only an exact in-place gradient over its input is allowed)");
        }
    }
    std::vector<double> scales(ns, 1.0);
    for (auto& [name, v] : batch.scales()) {
        std::size_t s = 0;
        while (s < ns && !(p.slots[s].name == name && p.slots[s].output && p.slots[s].vector)) ++s;
        if (s == ns) throw error("run: scale given for '" + name + "', which is not a vector output of the kernel");
        scales[s] = v;
    }

    std::vector<void*> data(ns, nullptr);
    std::vector<std::int64_t> strides(ns, 0);
    for (std::size_t s = 0; s < ns; ++s)
        if (bound[s]) {
            data[s] = bound[s]->data;
            strides[s] = static_cast<std::int64_t>(bound[s]->stride);
        }
    Result res;
    res.rows = N;
    int T = batch.thread_count() > 0 ? batch.thread_count() : omp_get_max_threads();
    const std::size_t work = N * K;
    T = static_cast<int>(std::min<std::size_t>({static_cast<std::size_t>(T), N ? N : 1, std::max<std::size_t>(1, work / 8192)}));
    std::vector<double> sums(static_cast<std::size_t>(T) * ns, 0.0);
    const jit::KernelFn fn = k.code.fn;
    const auto Kv = static_cast<std::int64_t>(K);
    // Unbound per-row outputs are written to a per-thread scratch value (stride 0), so the
    // kernel needs no branch per row.
    auto call = [&](int t, std::int64_t rb, std::int64_t re) {
        double scratch = 0;
        std::vector<void*> d = data;
        for (auto& x : d)
            if (x == nullptr) x = &scratch;
        fn(rb, re, Kv, d.data(), strides.data(), scales.data(), sums.data() + static_cast<std::size_t>(t) * ns);
    };
    if (N > 0) {
        if (T == 1) {
            call(0, 0, static_cast<std::int64_t>(N));
        } else {
#pragma omp parallel for num_threads(T) schedule(static, 1)
            for (int t = 0; t < T; ++t)
                call(t, static_cast<std::int64_t>(N * static_cast<std::size_t>(t) / static_cast<std::size_t>(T)),
                     static_cast<std::int64_t>(N * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(T)));
        }
    }
    for (std::size_t s = 0; s < ns; ++s) {
        if (!p.slots[s].output || p.slots[s].vector) continue;
        double tot = 0;
        for (int t = 0; t < T; ++t) tot += sums[static_cast<std::size_t>(t) * ns + s];
        res.sums.emplace_back(p.slots[s].name, tot);
    }
    return res;
}

}  // namespace lossjit
