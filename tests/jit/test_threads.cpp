// Eight threads compiling and running different kernels at once, each checked against the
// reference evaluator; and many threads compiling the same kernel get one compiled kernel.
#include <thread>

#include "common.hpp"

using namespace lossjit;

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
                jt::Data d;
                jt::make_data(k, d, 64, o.row_length, jt::Mode::normal, static_cast<std::uint32_t>(t));
                d.batch.threads(2);
                const Result r = k.run(d.batch);
                // compare outside Catch's (single-threaded) assertions: recompute the sum
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
                    const auto& out = k.graph().outputs();
                    for (const Output& o2 : out)
                        if (k.graph()[o2.root].shape == Shape::scalar) {
                            want += static_cast<double>(evaluate(k.graph(), o2.root, rv, d.K).s);
                            break;
                        }
                }
                double got = 0;
                for (const Slot& sl : k.slots())
                    if (sl.output && !sl.vector) {
                        got = r.sum(sl.name);
                        break;
                    }
                if (!(std::fabs(got - want) <= 1e-4 * (1 + std::fabs(want))))
                    failures[static_cast<std::size_t>(t)] = c.name + ": got " + std::to_string(got) + ", want " + std::to_string(want);
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
