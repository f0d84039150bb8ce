// The JIT tests' main. Run as `test_jit --disk-child` it is the second process of the disk cache
// test: it compiles the cross-entropy kernel (LOSSJIT_CACHE_DIR set by the parent), checks it,
// and prints "disk=1" when the machine code came from the disk cache, and how many entries it
// rejected.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>

#include "common.hpp"

int disk_child() {
    using namespace lossjit;
    CompileOptions o;
    o.row_length = 1000;
    Kernel k = compile(jt::ce_hard(), o);
    jt::Data d;
    jt::make_data(k, d, 64, 1000, jt::Mode::normal, 7);
    const Result r = k.run(d.batch);
    // a cheap self-check: the mean loss of random N(0, 2) logits over 1000 classes is about 8.8
    const double m = r.mean("loss");
    const bool ok = m > 5 && m < 12;
    std::printf("disk=%d ok=%d rejected=%llu\n", k.from_disk_cache() ? 1 : 0, ok ? 1 : 0, static_cast<unsigned long long>(cache_stats().disk_rejected));
    return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--disk-child") == 0) return disk_child();
    return Catch::Session().run(argc, argv);
}
