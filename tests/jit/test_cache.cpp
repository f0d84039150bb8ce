// The kernel caches: a second compile is a lookup; LOSSJIT_CACHE_DIR lets a second process load
// machine code from disk; corrupt or short entries are rejected and rebuilt, never executed; an
// unwritable directory just means no disk cache.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common.hpp"

using namespace lossjit;
namespace fs = std::filesystem;

namespace {
std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

std::string run_child(const std::string& dir) {
    const std::string cmd = "LOSSJIT_CACHE_DIR='" + dir + "' '" + self_exe() + "' --disk-child";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[256] = {};
    std::string out;
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
    return out;
}

fs::path fresh_dir(const char* tag) {
    const fs::path d = fs::temp_directory_path() / ("lossjit-test-" + std::string(tag) + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
}  // namespace

TEST_CASE("cache: the second compile is a lookup") {
    CompileOptions o;
    o.row_length = 77;
    Kernel a = compile(jt::ce_soft(), o);
    Kernel b = compile(jt::ce_soft(), o);
    CHECK_FALSE(a.from_memory_cache());
    CHECK(b.from_memory_cache());
    CHECK(&a.graph() == &b.graph());  // one compiled kernel
    o.row_length = 78;
    CHECK_FALSE(compile(jt::ce_soft(), o).from_memory_cache());
    o.dtype = DType::f64;
    CHECK_FALSE(compile(jt::ce_soft(), o).from_memory_cache());
    // a hit is fast
    o.dtype = DType::f32;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) (void)compile(jt::ce_soft(), o);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 1000;
    INFO("memory hit: " << us << " us (including building the graph)");
    CHECK(us < 50);
    // no cache: compiled again
    o.cache = false;
    CHECK_FALSE(compile(jt::ce_soft(), o).from_memory_cache());
}

TEST_CASE("cache: a second process loads the kernel from LOSSJIT_CACHE_DIR") {
    const fs::path dir = fresh_dir("disk");
    const std::string first = run_child(dir.string());
    INFO(first);
    CHECK(first.find("disk=0 ok=1") != std::string::npos);
    std::size_t files = 0;
    for (auto& e : fs::directory_iterator(dir)) files += e.path().extension() == ".lossjit";
    CHECK(files == 1);
    const std::string second = run_child(dir.string());
    INFO(second);
    CHECK(second.find("disk=1 ok=1") != std::string::npos);

    SECTION("corrupt and short entries are rejected and rebuilt") {
        for (auto& e : fs::directory_iterator(dir)) {
            std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(-20, std::ios::end);
            f.put('\x5a');  // flip a byte of the object: the checksum no longer matches
        }
        const std::string third = run_child(dir.string());
        INFO(third);
        CHECK(third.find("disk=0 ok=1") != std::string::npos);
        CHECK(run_child(dir.string()).find("disk=1 ok=1") != std::string::npos);  // rewritten
        for (auto& e : fs::directory_iterator(dir)) fs::resize_file(e.path(), 30);  // short
        CHECK(run_child(dir.string()).find("disk=0 ok=1") != std::string::npos);
        CHECK(run_child(dir.string()).find("disk=1 ok=1") != std::string::npos);
    }
    fs::remove_all(dir);
}

TEST_CASE("cache: an unwritable cache directory means no disk cache and no error") {
    const std::string out = run_child("/proc/lossjit-cannot-write-here");
    INFO(out);
    CHECK(out.find("disk=0 ok=1") != std::string::npos);
}
