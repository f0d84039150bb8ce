// The fuzz input as a stream of decisions. Structure (the graph, the options, the batch shape,
// the class of each row's values) is read from the input's bytes, so libFuzzer's mutations
// change it directly; bulk data (thousands of row values) comes from a generator seeded by the
// input, so one input describes a whole batch. Past the end every read gives 0: a short input
// is a small, simple case, and every input is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fuzz {

class ByteReader {
public:
    ByteReader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

    std::uint8_t byte() {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }
    // A number in [0, bound).
    unsigned pick(unsigned bound) {
        if (bound <= 1) return 0;
        const unsigned v = bound <= 256 ? byte() : static_cast<unsigned>(byte()) | static_cast<unsigned>(byte()) << 8;
        return v % bound;
    }
    // True with probability about 1 / n.
    bool one_in(unsigned n) { return pick(n) == 0; }
    std::uint64_t seed() {
        std::uint64_t s = 0;
        for (int i = 0; i < 8; ++i) s = s << 8 | byte();
        return s;
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
};

// splitmix64: small, fast, and the same sequence with every compiler and library.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : s_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
    double symmetric() { return 2 * uniform() - 1; }                              // [-1, 1)
    std::size_t below(std::size_t n) { return n <= 1 ? 0 : static_cast<std::size_t>(next() % n); }

private:
    std::uint64_t s_;
};

}  // namespace fuzz
