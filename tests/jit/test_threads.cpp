// Threads compiling and running kernels at once, each result checked against the reference
// evaluator: 8 different kernels; 16 threads x 1000 compiles with hits and misses interleaved;
// many threads compiling the same kernel get one compiled kernel; threads racing to the first run
// of a generic kernel's lengths; threads writing the disk cache.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "common.hpp"

using namespace lossjit;

namespace {

// Runs kernel k on a fresh random batch and compares the sum of its first per-row output with
// the reference evaluator. Returns "" or what went wrong (Catch's assertions are not
// thread-safe, so threads report by value).
std::string run_and_check(const jt::Case& c, const Kernel& k, std::size_t rows, std::size_t K, std::uint32_t seed) {
    jt::Data d;
    jt::make_data(k, d, rows, K, jt::Mode::normal, seed);
    d.batch.threads(1);
    const Result r = k.run(d.batch);
    double want = 0;
    for (std::size_t row = 0; row < d.N; ++row) {
        RowValues rv;
        for (auto& [n, v] : c.params) rv.set(n, static_cast<long double>(v));
        for (std::size_t s = 0; s < k.slots().size(); ++s) {
            const Slot& sl = k.slots()[s];
            if (sl.output) continue;
            const bool shared = d.ref[s].size() == (sl.vector ? d.K : 1);
            const std::size_t base = shared ? 0 : row * (sl.vector ? d.K : 1);
            if (sl.vector) rv.set(sl.name, std::vector<long double>(d.ref[s].begin() + static_cast<std::ptrdiff_t>(base),
                                                                     d.ref[s].begin() + static_cast<std::ptrdiff_t>(base + d.K)));
            else rv.set(sl.name, d.ref[s][base]);
        }
        for (const Output& o : k.graph().outputs())
            if (k.graph()[o.root].shape == Shape::scalar) {
                want += static_cast<double>(evaluate(k.graph(), o.root, rv, d.K).s);
                break;
            }
    }
    double got = 0;
    for (const Slot& sl : k.slots())
        if (sl.output && !sl.vector) {
            got = r.sum(sl.name);
            break;
        }
    if (std::fabs(got - want) <= 1e-4 * (1 + std::fabs(want))) return "";
    return c.name + " at K = " + std::to_string(K) + ": got " + std::to_string(got) + ", want " + std::to_string(want);
}

}  // namespace

TEST_CASE("threads: 8 threads compile and run different kernels at once") {
    const auto cs = jt::cases();
    std::vector<std::thread> ts;
    std::vector<std::string> failures(8);
    for (int t = 0; t < 8; ++t)
        ts.emplace_back([&, t] {
            try {
                const auto& c = cs[static_cast<std::size_t>(t) % cs.size()];
                CompileOptions o;
                o.params = c.params;
                o.row_length = 100 + static_cast<std::size_t>(t);  // a different kernel per thread
                o.dtype = t % 3 == 2 ? DType::f64 : DType::f32;
                Kernel k = compile(c.g, o);
                failures[static_cast<std::size_t>(t)] = run_and_check(c, k, 64, o.row_length, static_cast<std::uint32_t>(t));
            } catch (const std::exception& e) {
                failures[static_cast<std::size_t>(t)] = e.what();
            }
        });
    for (auto& t : ts) t.join();
    for (const auto& f : failures) CHECK(f == "");
}

TEST_CASE("threads: 16 threads, 1000 compiles and runs each, cache hits and misses interleaved") {
    const auto cs = jt::cases();
    constexpr int threads = 16, iterations = 1000;
    std::vector<std::thread> ts;
    std::vector<std::string> failures(threads);
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            try {
                for (int i = 0; i < iterations && failures[static_cast<std::size_t>(t)].empty(); ++i) {
                    const auto& c = cs[static_cast<std::size_t>(t + i) % cs.size()];
                    CompileOptions o;
                    o.params = c.params;
                    o.row_length = 1 + static_cast<std::size_t>((t * 7 + i) % 5) * 7;  // K in {1, 8, 15, 22, 29}
                    o.dtype = (t + i) % 4 == 3 ? DType::f64 : DType::f32;
                    o.cache = i % 250 != 7;  // now and then a compile that bypasses the cache
                    const Kernel k = compile(c.g, o);
                    failures[static_cast<std::size_t>(t)] =
                        run_and_check(c, k, 4, o.row_length, static_cast<std::uint32_t>(t * iterations + i));
                }
            } catch (const std::exception& e) {
                failures[static_cast<std::size_t>(t)] = e.what();
            }
        });
    for (auto& t : ts) t.join();
    for (const auto& f : failures) CHECK(f == "");
}

TEST_CASE("threads: 8 threads compiling the same kernel share one") {
    CompileOptions o;
    o.row_length = 4242;
    std::vector<Kernel> ks(8);
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) ts.emplace_back([&, t] { ks[static_cast<std::size_t>(t)] = compile(jt::ce_hard(), o); });
    for (auto& t : ts) t.join();
    int compiled = 0;
    for (auto& k : ks) {
        compiled += !k.from_memory_cache();
        CHECK(&k.graph() == &ks[0].graph());
    }
    CHECK(compiled == 1);
}

// Generic K compiles the kernel for a length at the first run with rows of it: 8 threads run one
// fresh generic kernel at once, two threads to each of 4 lengths (across rows, max ahead,
// pipelined rows of a multiple of the vector width, and of one block), so that threads race to
// the first run of each.
TEST_CASE("threads: 8 threads making generic K's kernels at their first runs at once") {
    for (int round = 0; round < 3; ++round) {
        CompileOptions o;
        o.cache = false;  // a fresh kernel: nothing compiled yet
        const Kernel k = compile(jt::ce_hard(), o);
        REQUIRE(k.compile_ms() == 0);
        const std::size_t Ks[] = {10, 1000, 5008, 1025};
        std::vector<std::thread> ts;
        std::vector<std::string> failures(8);
        for (int t = 0; t < 8; ++t)
            ts.emplace_back([&, t] {
                try {
                    const std::size_t K = Ks[t % 4];
                    failures[static_cast<std::size_t>(t)] = run_and_check({"ce_hard", jt::ce_hard(), {}}, k, 40, K, static_cast<std::uint32_t>(round * 8 + t));
                } catch (const std::exception& e) {
                    failures[static_cast<std::size_t>(t)] = e.what();
                }
            });
        for (auto& t : ts) t.join();
        for (const auto& f : failures) CHECK(f == "");
        CHECK(k.compile_ms() > 0);
    }
}

TEST_CASE("threads: 8 threads compiling with the disk cache on write one file each and leave no temporary file") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("lossjit-test-threads-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    ::setenv("LOSSJIT_CACHE_DIR", dir.c_str(), 1);  // read by compile(), set before any thread starts
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
        ts.emplace_back([t] {
            CompileOptions o;
            o.row_length = 5000 + static_cast<std::size_t>(t);  // new kernels: compiled, then written
            (void)compile(jt::ce_hard(), o);
        });
    for (auto& t : ts) t.join();
    ::unsetenv("LOSSJIT_CACHE_DIR");
    std::size_t files = 0, leftovers = 0;
    for (auto& e : fs::directory_iterator(dir)) {
        files += e.path().extension() == ".lossjit";
        leftovers += e.path().extension() != ".lossjit";  // temporary files renamed into place
    }
    CHECK(files == 8);
    CHECK(leftovers == 0);
    fs::remove_all(dir);
}
