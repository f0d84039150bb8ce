// The kernel caches: a second compile is a lookup; LOSSJIT_CACHE_DIR lets a second process load
// machine code from disk; corrupt or short entries are rejected and rebuilt, never executed; an
// unwritable directory just means no disk cache.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common.hpp"
#include "jit/disk_cache.hpp"

using namespace lossjit;
namespace fs = std::filesystem;

namespace {
std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// Runs the hidden test case below in a second process of this executable, LOSSJIT_CACHE_DIR=dir.
std::string run_child(const std::string& dir) {
    const std::string cmd = "LOSSJIT_CACHE_DIR='" + dir + "' '" + self_exe() + "' 'cache: the second process of the disk cache tests'";
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[256] = {};
    std::string out;
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    ::pclose(p);
    return out;
}

// Replaces the object inside a cache file by `object`, with the header's lengths and checksum
// made to match: a file only the loader can find wrong (a bug of a writer, not bit rot).
void rewrite_object(const fs::path& file, const std::string& object) {
    std::ifstream in(file, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    std::uint64_t klen = 0;
    std::memcpy(&klen, s.data() + 8, 8);  // little-endian u64, as disk_cache.cpp writes it
    std::string out = s.substr(0, 16 + klen);
    const std::uint64_t len = object.size(), sum = jit::fnv1a(object);
    out.append(reinterpret_cast<const char*>(&len), 8).append(reinterpret_cast<const char*>(&sum), 8).append(object);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << out;
}

std::string object_of(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::uint64_t klen = 0;
    std::memcpy(&klen, s.data() + 8, 8);
    return s.substr(16 + klen + 16);
}

fs::path fresh_dir(const char* tag) {
    const fs::path d = fs::temp_directory_path() / ("lossjit-test-" + std::string(tag) + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
}  // namespace

// Hidden ([.]): only run_child runs it, by name. It compiles the cross-entropy kernel, checks it,
// and prints "disk=1" when the machine code came from the disk cache, and how many entries it
// rejected.
TEST_CASE("cache: the second process of the disk cache tests", "[.]") {
    CompileOptions o;
    o.row_length = 1000;
    Kernel k = compile(jt::ce_hard(), o);
    jt::Data d;
    jt::make_data(k, d, 64, 1000, jt::Mode::normal, 7);
    const Result r = k.run(d.batch);
    // a cheap self-check: the mean loss of random N(0, 2) logits over 1000 classes is about 8.8
    const double m = r.mean("loss");
    const bool ok = m > 5 && m < 12;
    CHECK(ok);
    std::printf("disk=%d ok=%d rejected=%llu\n", k.from_disk_cache() ? 1 : 0, ok ? 1 : 0, static_cast<unsigned long long>(cache_stats().disk_rejected));
}

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

// Generic K's kernels compile each at the first run with rows of its lengths: compile() plans
// them, a batch pays for its own length's kernel once, and the inspection shows them all.
TEST_CASE("cache: generic K compiles a length's kernel at its first run, once") {
    CompileOptions o;
    o.cache = false;
    const Kernel k = compile(jt::ce_hard(), o);
    CHECK(k.compile_ms() == 0);
    CHECK_FALSE(k.from_disk_cache());
    auto run = [&](std::size_t K) {
        jt::Data d;
        jt::make_data(k, d, 20, K, jt::Mode::normal, static_cast<std::uint32_t>(K));
        const Result r = k.run(d.batch);
        jt::compare(k, d, r);
        return k.compile_ms();
    };
    const double first = run(10);
    CHECK(first > 0);
    CHECK(run(7) == first);  // the same kernel (rows of 1 to 32)
    const double second = run(1000);
    CHECK(second > first);
    CHECK(run(500) == second);
    const double third = run(3000);  // one block, not a multiple of the vector width
    CHECK(third > second);
    const double fourth = run(3008);  // a multiple of the vector width past the max ahead's rows
    CHECK(fourth > third);
    CHECK(run(40001) > fourth);  // several blocks, not a multiple of the vector width
    // every kernel's text, whether compiled or not
    const std::string a = k.assembly();
    CHECK(a.find("# rows of 1 to 32 elements:") == 0);
    CHECK(a.find("# rows of 1025 elements or more, a multiple of ") != std::string::npos);
    CHECK(a.find("# rows of 32769 elements or more:") != std::string::npos);
    CHECK(a.find("# rows of any other length:") != std::string::npos);
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
        CHECK(third.find("disk=0 ok=1 rejected=1") != std::string::npos);
        CHECK(run_child(dir.string()).find("disk=1 ok=1") != std::string::npos);  // rewritten
        for (auto& e : fs::directory_iterator(dir)) fs::resize_file(e.path(), 30);  // short
        CHECK(run_child(dir.string()).find("disk=0 ok=1") != std::string::npos);
        CHECK(run_child(dir.string()).find("disk=1 ok=1") != std::string::npos);
    }
    fs::remove_all(dir);
}

TEST_CASE("cache: an object that passes the checksum but does not load is rejected and rebuilt") {
    const fs::path dir = fresh_dir("badobj");
    REQUIRE(run_child(dir.string()).find("disk=0 ok=1") != std::string::npos);
    fs::path file;
    for (auto& e : fs::directory_iterator(dir)) file = e.path();
    const std::string good = object_of(file);
    REQUIRE(good.substr(1, 3) == "ELF");
    const std::string garbage(good.size(), '\xcc');  // int3 everywhere: a crash if ever executed
    const std::string truncated = good.substr(0, good.size() / 2);
    std::string no_sections = good;  // a valid ELF header whose section table lies past the end
    for (std::size_t i = 0x28; i < 0x30; ++i) no_sections[i] = '\x7f';
    for (const std::string* bad : std::initializer_list<const std::string*>{&garbage, &truncated, &no_sections}) {
        rewrite_object(file, *bad);
        const std::string out = run_child(dir.string());
        INFO("object of " << bad->size() << " bytes: " << out);
        CHECK(out.find("disk=0 ok=1 rejected=1") != std::string::npos);
        CHECK(object_of(file) == good);  // rebuilt and written again
        CHECK(run_child(dir.string()).find("disk=1 ok=1 rejected=0") != std::string::npos);
    }
    fs::remove_all(dir);
}

TEST_CASE("cache: an unwritable cache directory means no disk cache and no error") {
    const std::string out = run_child("/proc/lossjit-cannot-write-here");
    INFO(out);
    CHECK(out.find("disk=0 ok=1") != std::string::npos);
    // a path through a regular file, and a directory whose parent does not exist
    const fs::path dir = fresh_dir("notadir");
    std::ofstream(dir / "file") << "x";
    for (const fs::path& p : {dir / "file", dir / "file" / "sub", dir / "missing" / "sub"}) {
        const std::string o = run_child(p.string());
        INFO(p << ": " << o);
        CHECK(o.find("disk=0 ok=1 rejected=0") != std::string::npos);
        CHECK(run_child(p.string()).find("disk=0 ok=1") != std::string::npos);  // nothing was written
    }
    // a read-only directory (root ignores permissions: then the directory is writable)
    if (::geteuid() != 0) {
        const fs::path ro = dir / "ro";
        fs::create_directories(ro);
        fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
        CHECK(run_child(ro.string()).find("disk=0 ok=1") != std::string::npos);
        CHECK(run_child(ro.string()).find("disk=0 ok=1") != std::string::npos);
        fs::permissions(ro, fs::perms::owner_all);
    }
    fs::remove_all(dir);
}
