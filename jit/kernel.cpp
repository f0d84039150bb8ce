// compile() with the in-process kernel cache, and Kernel::run: argument checks, then threads
// over chunks of rows (OpenMP). No LLVM here.
#include "lossjit/kernel.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <iostream>
#include <limits>
#include <mutex>
#include <type_traits>
#include <unordered_map>

#include "engine.hpp"
#include "schedule.hpp"

namespace lossjit {

namespace detail {
struct KernelImpl {
    Graph graph;
    // jit::make_plans's plans: one, or for generic K one for each range of row lengths (the
    // last for any length)
    std::vector<jit::Plan> plans;
    std::string disk_dir;  // LOSSJIT_CACHE_DIR at compile() ("": no disk cache)
    // Each plan's machine code, made once: by compile() for a known K; for generic K at the
    // first run with rows its plan takes, so that a batch waits for its own kernel's compile
    // only, and a loss used at one K compiles one kernel.
    struct Code {
        std::once_flag once;
        jit::Compiled compiled;
        std::atomic<bool> made{false};
    };
    mutable std::vector<Code> codes;
    const jit::Plan& plan() const { return plans.back(); }  // the slots, which every plan shares
    const jit::Compiled& code(std::size_t i) const;        // made on first use (below)
    // Whether the kernels made so far (one at least) all came from the disk cache, and the wall
    // time they took.
    bool from_disk() const {
        bool any = false, all = true;
        for (const Code& c : codes)
            if (c.made.load(std::memory_order_acquire)) any = true, all = all && c.compiled.from_disk;
        return any && all;
    }
    double compile_ms() const {
        double ms = 0;
        for (const Code& c : codes)
            if (c.made.load(std::memory_order_acquire)) ms += c.compiled.ms;
        return ms;
    }
    // the plan for rows of K elements
    std::size_t pick(std::size_t K) const {
        std::size_t i = 0;
        while (i + 1 < plans.size() && !plans[i].admits(K)) ++i;
        return i;
    }
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

// Each plan's text; for generic K, each headed by a line with its rows' lengths (after
// `comment`, the text's own comment marker).
std::string each_plan(const detail::KernelImpl& k, const std::string& comment, const std::function<std::string(const jit::Plan&)>& text) {
    if (k.plans.size() == 1) return text(k.plan());
    std::string out;
    for (const jit::Plan& p : k.plans)
        out += comment + "rows of " + (&p == &k.plan() ? "any other length" : jit::to_string(p.lengths)) + ":\n" + text(p);
    return out;
}
std::string schedule_text(const detail::KernelImpl& k) { return each_plan(k, "", [](const jit::Plan& p) { return jit::to_string(p); }); }
std::string ir_text(const detail::KernelImpl& k, bool optimized) {
    return each_plan(k, "; ", [&](const jit::Plan& p) { return jit::ir_text(p, optimized); });
}
std::string asm_text(const detail::KernelImpl& k) { return each_plan(k, "# ", [](const jit::Plan& p) { return jit::asm_text(p); }); }

Impl build(const Graph& g, const CompileOptions& o) {
    auto impl = std::make_shared<detail::KernelImpl>();
    impl->graph = g;
    impl->plans = jit::make_plans(g, o, jit::host());
    if (o.cache)
        if (const char* d = std::getenv("LOSSJIT_CACHE_DIR"); d && *d) impl->disk_dir = d;
    impl->codes = std::vector<detail::KernelImpl::Code>(impl->plans.size());
    const int dl = debug_level();
    if (dl >= 2) std::cerr << "lossjit: graph\n" << jit::graph_text(impl->plan().g) << "lossjit: schedule\n" << schedule_text(*impl);
    if (dl >= 3) {
        std::cerr << "lossjit: LLVM IR before optimization\n" << ir_text(*impl, false);
        std::cerr << "lossjit: LLVM IR after optimization\n" << ir_text(*impl, true);
    }
    if (dl >= 4) std::cerr << "lossjit: assembly\n" << asm_text(*impl);
    if (impl->plan().K) impl->code(0);
    cache().compiles++;
    return impl;
}

}  // namespace

const jit::Compiled& detail::KernelImpl::code(std::size_t i) const {
    Code& c = codes[i];
    std::call_once(c.once, [&] {
        c.compiled = jit::build(plans[i], jit::cache_key(plans[i]), disk_dir);
        c.made.store(true, std::memory_order_release);
        if (debug_level() >= 2)
            std::cerr << "lossjit: machine code" << (plans.size() > 1 ? " for rows of " + jit::to_string(plans[i].lengths) : std::string())
                      << (c.compiled.from_disk ? " loaded from the disk cache" : " compiled") << " in " << c.compiled.ms << " ms for "
                      << jit::host().cpu << "\n";
    });
    return c.compiled;
}

namespace {

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
std::string Kernel::schedule() const { return schedule_text(need(impl_)); }
std::string Kernel::llvm_ir(bool optimized) const { return ir_text(need(impl_), optimized); }
std::string Kernel::assembly() const { return asm_text(need(impl_)); }
const std::vector<Slot>& Kernel::slots() const { return need(impl_).plan().slots; }
std::size_t Kernel::row_length() const { return need(impl_).plan().K; }
DType Kernel::dtype() const {
    const auto& p = need(impl_).plan();
    for (const Slot& s : p.slots)
        if (s.vector && !s.output && s.kind == InputKind::logits) return s.dtype;
    return p.compute;
}
std::string Kernel::cpu() const { return jit::host().cpu; }
bool Kernel::from_disk_cache() const { return need(impl_).from_disk(); }
double Kernel::compile_ms() const { return need(impl_).compile_ms(); }

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

// One element of a bound floating array (row r, column j; stride 0 repeats one row).
double element(const Array& a, std::size_t r, std::size_t j) {
    const std::size_t i = r * a.stride + j;
    switch (a.dtype) {
    case DType::f32: return static_cast<const float*>(a.data)[i];
    case DType::f64: return static_cast<const double*>(a.data)[i];
    case DType::bf16: return static_cast<const bf16*>(a.data)[i].to_float();
    default: return 0;
    }
}
std::int64_t label(const Array& a, std::size_t r) {
    return a.dtype == DType::i32 ? static_cast<const std::int32_t*>(a.data)[r * a.stride] : static_cast<const std::int64_t*>(a.data)[r * a.stride];
}
// The label pre-pass over one label input: marks in skip the rows whose label is ignore_index
// (when ignoring) and returns the first row whose label is otherwise outside [0, K), N if none.
// It runs before every run, so it is a branch-free loop over T chunks of rows (its OR reduction
// vectorizes, in an AVX2 clone where the CPU has it); the first bad row is searched for only when
// there is one. A loop over the rows asking each label input in turn cost a fifth of the K = 10
// kernel's time.
template <class L>
[[gnu::always_inline]] inline unsigned bad_labels(const L* y, std::size_t stride, std::size_t r0, std::size_t r1, std::size_t K, bool ignoring,
                                                  std::int64_t ignore, std::uint8_t* skip) {
    unsigned bad = 0;
    for (std::size_t r = r0; r < r1; ++r) {
        const std::int64_t v = y[r * stride];
        const bool ignored = ignoring && v == ignore;
        if (ignoring) skip[r] = static_cast<std::uint8_t>(skip[r] | ignored);
        bad |= static_cast<unsigned>(!ignored & (static_cast<std::uint64_t>(v) >= K));
    }
    return bad;
}
// (function templates cannot be multiversioned: one clone set per label type)
__attribute__((target_clones("avx2", "default"))) unsigned bad_labels_i32(const std::int32_t* y, std::size_t stride, std::size_t r0, std::size_t r1,
                                                                          std::size_t K, bool ignoring, std::int64_t ignore, std::uint8_t* skip) {
    return bad_labels(y, stride, r0, r1, K, ignoring, ignore, skip);
}
__attribute__((target_clones("avx2", "default"))) unsigned bad_labels_i64(const std::int64_t* y, std::size_t stride, std::size_t r0, std::size_t r1,
                                                                          std::size_t K, bool ignoring, std::int64_t ignore, std::uint8_t* skip) {
    return bad_labels(y, stride, r0, r1, K, ignoring, ignore, skip);
}
std::size_t scan_labels(const Array& a, std::size_t N, std::size_t K, bool ignoring, std::int64_t ignore, std::uint8_t* skip, int T) {
    unsigned bad = 0;
#pragma omp parallel for if (T > 1) num_threads(T) schedule(static) reduction(| : bad)
    for (int t = 0; t < T; ++t) {
        const std::size_t r0 = N * static_cast<std::size_t>(t) / static_cast<std::size_t>(T);
        const std::size_t r1 = N * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(T);
        bad |= a.dtype == DType::i32 ? bad_labels_i32(static_cast<const std::int32_t*>(a.data), a.stride, r0, r1, K, ignoring, ignore, skip)
                                     : bad_labels_i64(static_cast<const std::int64_t*>(a.data), a.stride, r0, r1, K, ignoring, ignore, skip);
    }
    if (!bad) return N;
    std::size_t r = 0;
    while (static_cast<std::uint64_t>(label(a, r)) < K || (ignoring && label(a, r) == ignore)) ++r;
    return r;
}
std::string number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

// Whether row r of a (K values) holds a value below 0. Branch-free, so that it vectorizes: it
// runs over whole per-row weights matrices (BCE targets) before every run, and must cost a
// streaming read, not a second kernel (a per-element dtype switch ran at about 1 GB/s).
template <class T> bool row_has_negative(const T* x, std::size_t K) {
    unsigned neg = 0;
    for (std::size_t j = 0; j < K; ++j) {
        float v;
        if constexpr (std::is_same_v<T, bf16>) {
            const std::uint32_t bits = static_cast<std::uint32_t>(x[j].bits) << 16;
            std::memcpy(&v, &bits, sizeof v);
            neg |= v < 0 ? 1U : 0U;
        } else {
            neg |= x[j] < 0 ? 1U : 0U;
        }
    }
    return neg != 0;
}
bool row_has_negative(const Array& a, std::size_t r, std::size_t K) {
    const std::size_t base = r * a.stride;
    switch (a.dtype) {
    case DType::f32: return row_has_negative(static_cast<const float*>(a.data) + base, K);
    case DType::f64: return row_has_negative(static_cast<const double*>(a.data) + base, K);
    case DType::bf16: return row_has_negative(static_cast<const bf16*>(a.data) + base, K);
    default: return false;
    }
}

// A negative value in a bound weights input: an error naming the first one (rows scanned on T
// threads; the first bad row found again for the message).
void check_weights_not_negative(const Array& a, const std::string& name, std::size_t N, std::size_t K, int T) {
    const std::int64_t rows = a.stride == 0 ? 1 : static_cast<std::int64_t>(N);
    std::int64_t first = rows;
#pragma omp parallel for num_threads(T) schedule(static) reduction(min : first)
    for (std::int64_t r = 0; r < rows; ++r)
        if (r < first && row_has_negative(a, static_cast<std::size_t>(r), K)) first = r;
    if (first == rows) return;
    const auto r = static_cast<std::size_t>(first);
    std::size_t j = 0;
    while (!(element(a, r, j) < 0)) ++j;
    throw error("run: weights '" + name + "' has a negative value, " + number(element(a, r, j)) + ", at " +
                (a.stride == 0 ? std::string() : "row " + std::to_string(r) + ", ") + "element " + std::to_string(j) + " (weights must be >= 0)");
}

// Multiplies the vector outputs of the rows computed (state 0) by f.
void rescale(const jit::Plan& p, const std::vector<const Array*>& bound, const std::uint8_t* state, std::size_t N, std::size_t K, double f,
             int T) {
    for (std::size_t s = 0; s < p.slots.size(); ++s) {
        if (!p.slots[s].output || !p.slots[s].vector || !bound[s]) continue;
        const Array a = *bound[s];
#pragma omp parallel for num_threads(T) schedule(static)
        for (std::int64_t r = 0; r < static_cast<std::int64_t>(N); ++r) {
            if (state[r] != 0) continue;
            const std::size_t base = static_cast<std::size_t>(r) * a.stride;
            for (std::size_t j = 0; j < K; ++j) switch (a.dtype) {
                case DType::f32: static_cast<float*>(a.data)[base + j] = static_cast<float>(static_cast<float*>(a.data)[base + j] * f); break;
                case DType::f64: static_cast<double*>(a.data)[base + j] *= f; break;
                case DType::bf16: {
                    bf16& x = static_cast<bf16*>(a.data)[base + j];
                    x = bf16::from_float(static_cast<float>(x.to_float() * f));
                    break;
                }
                default: break;
                }
        }
    }
}

// With several threads the batch runs in chunks of rows that the threads take as they come
// free, so that a thread slowed down (on a shared machine, its vCPU taken away for a while)
// holds up only its current chunk, not a fixed share of the batch. The chunks shrink, each a
// 1/(4T) of the rows left (as OpenMP's guided schedule): the first ones long, for the kernel's
// row pipelining and prefetching, which stop at a call's end, the last ones short, to even
// out the end. Each chunk adds into sums of its own, added in chunk order afterwards: the
// results are the same bits from run to run. 2 threads against halves of the batch, medians of
// 5 (ce_probe, interleaved): fwd 8192x1000 61 -> 67 GB/s, fwd+bwd 8192x1000 21.8 -> 24.7,
// 64x256000 20.0 -> 22.7, 65536x10 13.1 -> 14.3. Chunks of 256 KB each (100 a call) ran one
// thread at the speed of one call; 1-row chunks of 128 KB rows lost 12%. The chunks' ends.
std::vector<std::size_t> chunk_ends(std::size_t N, std::size_t row_bytes, int T) {
    if (N == 0) return {};
    if (T <= 1) return {N};
    constexpr std::size_t kMinChunkBytes = std::size_t{256} << 10;
    const std::size_t min_rows = std::max<std::size_t>(16, (kMinChunkBytes + row_bytes - 1) / std::max<std::size_t>(1, row_bytes));
    std::vector<std::size_t> ends;
    for (std::size_t r = 0; r < N;) {
        const std::size_t rows = std::max(min_rows, (N - r) / (4 * static_cast<std::size_t>(T)));
        r = std::min(N, r + (rows + 15) / 16 * 16);  // whole blocks of 16 rows (across rows, batched tails)
        ends.push_back(r);
    }
    return ends;
}

}  // namespace

Result Kernel::run(const Batch& batch) const {
    const detail::KernelImpl& k = need(impl_);
    const jit::Plan& p = k.plan();
    if (batch.thread_count() < 0)
        throw error("run: threads(" + std::to_string(batch.thread_count()) + ") is negative: give a thread count, or 0 for all cores");
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
        // The kernel's loads and stores assume elements at multiples of their size (any vector
        // alignment is fine); a pointer between elements is a caller's bug, not a layout.
        if (const std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(a->data); addr % size_of(a->dtype) != 0) {
            char at[32];
            std::snprintf(at, sizeof at, "%#llx", static_cast<unsigned long long>(addr));
            throw error("run: '" + sl.name + "' is at address " + at + ", not a multiple of " + std::to_string(size_of(a->dtype)) +
                        " bytes (misaligned " + std::string(to_string(a->dtype)) + " elements)");
        }
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

    // Labels, weights and the mean's denominator: a pre-pass over the labels (and the rows of
    // the class weights they select), before anything is written.
    std::vector<std::size_t> label_slots, weight_slots;
    for (std::size_t s = 0; s < ns; ++s) {
        if (p.slots[s].output || !bound[s]) continue;
        if (p.slots[s].kind == InputKind::label) label_slots.push_back(s);
        if (p.slots[s].kind == InputKind::weights && p.slots[s].vector) weight_slots.push_back(s);
    }
    if (label_slots.empty() && batch.ignore_mode() == Batch::Ignore::set)
        throw error("run: ignore_index is set, but the kernel has no label input");
    const bool ignoring = !label_slots.empty() && batch.ignore_mode() != Batch::Ignore::off;
    const std::int64_t ignore = ignoring ? batch.ignore_value() : std::numeric_limits<std::int64_t>::min();
    std::size_t wslot = ns, wlabel = ns;  // weighted mean: its weights and label slots
    if (!batch.mean_weights().empty()) {
        for (std::size_t s : weight_slots)
            if (p.slots[s].name == batch.mean_weights()) wslot = s;
        if (wslot == ns)
            throw error("run: weighted_mean(\"" + batch.mean_weights() + "\"): the kernel has no weights input of that name; it has: " +
                        names(p.slots));
        if (!batch.mean_label().empty()) {
            for (std::size_t s : label_slots)
                if (p.slots[s].name == batch.mean_label()) wlabel = s;
            if (wlabel == ns) throw error("run: weighted_mean: the kernel has no label input named '" + batch.mean_label() + "'");
        } else {
            if (label_slots.size() != 1)
                throw error("run: weighted_mean(\"" + batch.mean_weights() + "\") needs a label input to select the weights; the kernel has " +
                            std::to_string(label_slots.size()) + (label_slots.empty() ? "" : ": name it, weighted_mean(w, label)"));
            wlabel = label_slots[0];
        }
    }
    int T = batch.thread_count() > 0 ? batch.thread_count() : omp_get_max_threads();
    T = static_cast<int>(std::min<std::size_t>({static_cast<std::size_t>(T), N ? N : 1, std::max<std::size_t>(1, N * K / 8192)}));
    for (std::size_t s : weight_slots) check_weights_not_negative(*bound[s], p.slots[s].name, N, K, T);
    std::vector<std::uint8_t> skip(ignoring ? N : 0, 0);  // rows with a label equal to ignore_index
    std::size_t bad_slot = ns, bad_row = N;
    for (std::size_t s : label_slots)
        if (const std::size_t r = scan_labels(*bound[s], N, K, ignoring, ignore, skip.data(), T); r < bad_row) {
            bad_row = r;
            bad_slot = s;
        }
    if (bad_slot != ns)
        throw error("run: label '" + p.slots[bad_slot].name + "' at row " + std::to_string(bad_row) + " is " +
                    std::to_string(label(*bound[bad_slot], bad_row)) + ", outside [0, " + std::to_string(K) + ")" +
                    (ignoring ? " and not ignore_index " + std::to_string(ignore) : std::string()));
    std::size_t counted = N;
    for (const std::uint8_t x : skip) counted -= x;
    double weight_sum = 0;
    if (wslot != ns)
        for (std::size_t r = 0; r < N; ++r)
            if (skip.empty() || !skip[r]) weight_sum += element(*bound[wslot], r, static_cast<std::size_t>(label(*bound[wlabel], r)));
    const Reduction red = batch.reduction();
    const double denom0 = wslot != ns ? weight_sum : static_cast<double>(counted);
    const double red_scale = red != Reduction::mean ? 1.0 : denom0 > 0 ? 1.0 / denom0 : 0.0;
    for (std::size_t s = 0; s < ns; ++s)
        if (p.slots[s].output && p.slots[s].vector) scales[s] *= red_scale;

    std::vector<void*> data(ns, nullptr);
    std::vector<std::int64_t> strides(ns, 0);
    for (std::size_t s = 0; s < ns; ++s)
        if (bound[s]) {
            data[s] = bound[s]->data;
            strides[s] = static_cast<std::int64_t>(bound[s]->stride);
        }
    Result res;
    res.rows = N;
    res.reduction = red;
    const std::size_t nsum = ns + 1;  // per chunk: one per slot, then the count of masked rows
    const std::size_t row_bytes = p.row_bytes(K);  // of the row arrays, read and written
    const std::vector<std::size_t> ends = chunk_ends(N, row_bytes, T);
    std::vector<double> sums(ends.size() * nsum, 0.0);
    std::unique_ptr<std::uint8_t[]> state(new std::uint8_t[N ? N : 1]);  // written by the kernel, every row
    const std::size_t pick = k.pick(K);  // generic K: the kernel for rows of K
    const jit::Plan& kp = k.plans[pick];
    const jit::KernelFn fn = k.code(pick).fn;  // generic K: compiled at the first run with rows of its lengths
    const auto Kv = static_cast<std::int64_t>(K);
    // Unbound per-row outputs are written to a per-thread scratch value (stride 0), so the
    // kernel needs no branch per row.
    // A kernel with cached softmax (Plan::cache_lse) gets a scratch row per thread after the
    // slots' pointers, 64-byte aligned, kept from run to run.
    const std::size_t scratch_bytes = kp.scratch_elems(K) * size_of(kp.compute);
    // Plan::stream_min_bytes: decided for the batch, not for a chunk
    const std::int64_t stream = kp.stream_min_bytes && N * row_bytes >= kp.stream_min_bytes;
    std::atomic<std::size_t> next_chunk{0};
    auto work = [&] {
        double scratch = 0;
        std::vector<void*> d = data;
        for (auto& x : d)
            if (x == nullptr) x = &scratch;
        if (scratch_bytes) {
            thread_local std::vector<unsigned char> row;
            if (row.size() < scratch_bytes + 64) row.resize(scratch_bytes + 64);
            d.push_back(row.data() + (64 - reinterpret_cast<std::uintptr_t>(row.data()) % 64) % 64);
        }
        for (std::size_t c; (c = next_chunk.fetch_add(1, std::memory_order_relaxed)) < ends.size();)
            fn(static_cast<std::int64_t>(c ? ends[c - 1] : 0), static_cast<std::int64_t>(ends[c]), Kv, d.data(), strides.data(), scales.data(),
               sums.data() + c * nsum, ignore, state.get(), stream);
    };
    if (T == 1) {
        work();
    } else {
#pragma omp parallel num_threads(T)
        work();
    }
    auto total = [&](std::size_t s) {
        double tot = 0;
        for (std::size_t c = 0; c < ends.size(); ++c) tot += sums[c * nsum + s];
        return tot;
    };
    for (std::size_t s = 0; s < ns; ++s)
        if (p.slots[s].output && !p.slots[s].vector) res.sums.emplace_back(p.slots[s].name, total(s));
    const double masked = total(ns);
    res.masked = static_cast<std::size_t>(masked);
    res.ignored = N - counted;
    res.counted = counted - res.masked;
    res.denominator = denom0;
    if (res.masked > 0) {
        // Rare: fully masked rows found inside the kernel are not counted. The denominator is
        // summed again over the rows computed, and their stored gradients rescaled for a mean.
        double d = 0;
        for (std::size_t r = 0; r < N; ++r)
            if (state[r] == 0) d += wslot != ns ? element(*bound[wslot], r, static_cast<std::size_t>(label(*bound[wlabel], r))) : 1.0;
        res.denominator = d;
        if (red == Reduction::mean && denom0 > 0) rescale(p, bound, state.get(), N, K, d > 0 ? denom0 / d : 0.0, T);
    }
    return res;
}

}  // namespace lossjit
