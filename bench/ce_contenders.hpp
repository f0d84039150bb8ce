// What bench_ce runs: lossjit's kernels, the peers of bench_peers.hpp, each wrapped as a checked
// Contender, measured row by row into the Results.
#pragma once

#include <lossjit/kernel.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "bench_peers.hpp"
#include "ce_measure.hpp"

namespace bench {

// lossjit's contender, -log(at(softmax(u), y)), lowered once without and once with the gradient.
struct LossjitGraphs {
    lossjit::Graph fwd, fwdbwd;
    std::string formula() const;  // the expression and the outputs it lowers to
};
LossjitGraphs lower_cross_entropy();

// Whether a peer library can run in this process; `text` is its version, or why it is skipped.
struct PeerStatus {
    bool ready = false;
    std::string text;
};
struct Peers {
    PeerStatus torch, dnnl;
};
Peers start_peers();

// One shape's setup, shared by all its rows: the data with its reference, lossjit's kernels
// ([bf16][fwdbwd], compiled for this K) and oneDNN's primitive.
class ShapeBench {
public:
    ShapeBench(const Shape& s, std::uint64_t seed, const LossjitGraphs& graphs, const Peers& peers, Results& results);
    ~ShapeBench();
    ShapeBench(const ShapeBench&) = delete;
    ShapeBench& operator=(const ShapeBench&) = delete;

    // Adds a cell for every contender that can run `row` (and records in `results` the ones that
    // cannot: a peer absent, a kernel that did not compile).
    void add_row(const Row& row, Results& results);
    // Checks and times the cells added since the last call, all of them in the same rounds
    // (bench::measure), into `results`.
    void measure(const Settings& st, Results& results);

private:
    void add_lossjit(const Row& row, Results& results);
    void add_cpp(const Row& row);
    void add_torch(const Row& row, Results& results);
    void add_dnnl(const Row& row, Results& results);
    void add_rooflines(const Row& row);

    Shape shape_;
    Peers peers_;
    Data d_;
    lossjit::Kernel kern_[2][2];
    std::string kern_err_[2][2];
    std::vector<Cell> cells_;
#ifdef LOSSJIT_BENCH_HAVE_DNNL  // without it, peer_dnnl.cpp (LogSoftmax's code) is not linked
    std::unique_ptr<dnnl_peer::LogSoftmax> dnnl_;
    std::string dnnl_err_;
#endif
};

}  // namespace bench
