// The Graph: the library's one run-time form of an expression. Plain data (a vector of nodes that
// refer to earlier nodes by index), hash-consed so that equal subexpressions are one node.
// Everything in this header is constexpr, so the same Graph serves the compile-time simplifier
// (inside static_assert) and the JIT at run time: `include/` builds it, `jit/` starts from it.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lossjit/error.hpp"
#include "lossjit/ops.hpp"

namespace lossjit {

// A short name held by value, so that nodes stay trivially copyable and usable in constant
// evaluation (std::string is not, with every standard library this must build against).
struct Name {
    static constexpr std::size_t capacity = 31;
    char text[capacity + 1]{};
    std::uint8_t length = 0;

    constexpr Name() = default;
    constexpr Name(std::string_view s) {  // NOLINT: implicit by design, names are strings
        if (s.size() > capacity) throw error("name '" + std::string(s) + "' is longer than 31 characters");
        for (std::size_t i = 0; i < s.size(); ++i) text[i] = s[i];
        length = static_cast<std::uint8_t>(s.size());
    }
    // prefix followed by s, e.g. Name("grad.", "u"); built without std::string, which some
    // sanitizer builds cannot run in constant evaluation
    constexpr Name(std::string_view prefix, std::string_view s) {
        if (prefix.size() + s.size() > capacity) throw error("name '" + std::string(prefix) + std::string(s) + "' is longer than 31 characters");
        for (std::size_t i = 0; i < prefix.size(); ++i) text[i] = prefix[i];
        for (std::size_t i = 0; i < s.size(); ++i) text[prefix.size() + i] = s[i];
        length = static_cast<std::uint8_t>(prefix.size() + s.size());
    }
    constexpr std::string_view view() const { return {text, length}; }
    constexpr bool operator==(const Name& o) const { return view() == o.view(); }
    constexpr auto operator<=>(const Name& o) const { return view() <=> o.view(); }
};

struct Node {
    Op op = Op::constant;
    Shape shape = Shape::scalar;
    InputKind kind = InputKind::logits;  // Op::input only
    std::int32_t a = -1, b = -1;         // arguments, indices of earlier nodes
    double value = 0;                    // Op::constant: the number; Op::wildcard: its index
    Name name;                           // Op::input: its name; Op::wildcard: its printed name

    constexpr bool operator==(const Node& o) const {
        // compare numbers bit for bit: -0.0 and 0.0 are different constants, NaN equals itself
        return op == o.op && shape == o.shape && kind == o.kind && a == o.a && b == o.b &&
               std::bit_cast<std::uint64_t>(value) == std::bit_cast<std::uint64_t>(o.value) &&
               name == o.name;
    }
};

// A named root: the loss, a gradient, any extra per-row value a kernel should produce.
struct Output {
    Name name;
    std::int32_t root = -1;
    constexpr bool operator==(const Output&) const = default;
};

class Graph {
public:
    constexpr Graph() = default;

    // Adds a node, or returns the index of the equal node already present. An open-addressing
    // index keeps this O(1): the simplifier adds many nodes, in constant evaluation too.
    constexpr int add(const Node& n) {
        const std::uint64_t h = node_hash(n);
        if (2 * (nodes_.size() + 1) > index_.size()) rehash(index_.empty() ? 64 : 2 * index_.size());
        const std::size_t mask = index_.size() - 1;
        std::size_t slot = static_cast<std::size_t>(h) & mask;
        for (; index_[slot] >= 0; slot = (slot + 1) & mask) {
            const auto i = static_cast<std::size_t>(index_[slot]);
            if (hashes_[i] == h && nodes_[i] == n) return index_[slot];
        }
        index_[slot] = static_cast<int>(nodes_.size());
        nodes_.push_back(n);
        hashes_.push_back(h);
        return static_cast<int>(nodes_.size() - 1);
    }

    constexpr int constant(double v) {
        Node n;
        n.op = Op::constant;
        n.value = v;
        return add(n);
    }
    constexpr int input(std::string_view name, InputKind k) {
        Node n;
        n.op = Op::input;
        n.kind = k;
        n.shape = shape_of(k);
        n.name = Name(name);
        return add(n);
    }
    constexpr int row_length() {
        Node n;
        n.op = Op::row_length;
        return add(n);
    }
    constexpr int wildcard(int index, std::string_view name, Shape s) {
        Node n;
        n.op = Op::wildcard;
        n.value = index;
        n.name = Name(name);
        n.shape = s;
        return add(n);
    }
    // An op applied to earlier nodes; the result's shape follows from the arguments'.
    constexpr int apply(Op o, int a, int b = -1) {
        const OpInfo& d = info(o);
        if (d.arity == 0 || a < 0 || a >= size() || (d.arity == 2) != (b >= 0) || b >= size())
            throw error("Graph::apply: bad arguments for " + std::string(d.name));
        Node n;
        n.op = o;
        n.a = a;
        n.b = b;
        n.shape = result_shape(o, nodes_[a].shape, b >= 0 ? nodes_[b].shape : Shape::scalar);
        return add(n);
    }

    constexpr const Node& operator[](int i) const { return nodes_[static_cast<std::size_t>(i)]; }
    constexpr int size() const { return static_cast<int>(nodes_.size()); }
    constexpr const std::vector<Node>& nodes() const { return nodes_; }

    constexpr void add_output(const Name& name, int root) { outputs_.push_back(Output{name, root}); }
    constexpr void add_output(std::string_view name, int root) { add_output(Name(name), root); }
    constexpr const std::vector<Output>& outputs() const { return outputs_; }
    // The root node of the output named `name`, or -1 when there is none.
    constexpr int output_root(std::string_view name) const {
        for (const Output& o : outputs_)
            if (o.name.view() == name) return o.root;
        return -1;
    }
    constexpr Output& last_output() { return outputs_.back(); }

    // FNV-1a over a node's fields: cheap to compute in constant evaluation too.
    static constexpr std::uint64_t node_hash(const Node& n) {
        std::uint64_t h = 1469598103934665603ull;
        auto mix = [&h](std::uint64_t x) {
            for (int i = 0; i < 8; ++i) {
                h ^= (x >> (8 * i)) & 0xffu;
                h *= 1099511628211ull;
            }
        };
        mix(static_cast<std::uint64_t>(n.op) | static_cast<std::uint64_t>(n.shape) << 8 |
            static_cast<std::uint64_t>(n.kind) << 16);
        mix(static_cast<std::uint64_t>(static_cast<std::uint32_t>(n.a)) << 32 |
            static_cast<std::uint32_t>(n.b));
        mix(std::bit_cast<std::uint64_t>(n.value));
        for (char c : n.name.view()) mix(static_cast<unsigned char>(c));
        return h;
    }

private:
    std::vector<Node> nodes_;
    std::vector<std::uint64_t> hashes_;
    std::vector<int> index_;  // hash -> node, -1 empty; a power-of-two size, at most half full
    std::vector<Output> outputs_;

    constexpr void rehash(std::size_t size) {
        index_.assign(size, -1);
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            std::size_t slot = static_cast<std::size_t>(hashes_[i]) & (size - 1);
            while (index_[slot] >= 0) slot = (slot + 1) & (size - 1);
            index_[slot] = static_cast<int>(i);
        }
    }
};

// Copies `root` of `from` (and everything it uses) into `to`; returns its index in `to`.
// `memo` maps indices of `from` to indices of `to` (-1: not copied yet).
constexpr int copy_into(Graph& to, const Graph& from, int root, std::vector<int>& memo) {
    if (memo[static_cast<std::size_t>(root)] >= 0) return memo[static_cast<std::size_t>(root)];
    Node n = from[root];
    if (n.a >= 0) n.a = copy_into(to, from, n.a, memo);
    if (n.b >= 0) n.b = copy_into(to, from, n.b, memo);
    return memo[static_cast<std::size_t>(root)] = to.add(n);
}

// Only the nodes the outputs use, in a deterministic order: two graphs for the same outputs
// compact to equal graphs, which is what the kernel cache keys on.
constexpr Graph compact(const Graph& g) {
    Graph out;
    std::vector<int> memo(static_cast<std::size_t>(g.size()), -1);
    for (const Output& o : g.outputs()) out.add_output(o.name.view(), copy_into(out, g, o.root, memo));
    return out;
}

// A hash of the compacted graph: nodes and outputs.
constexpr std::uint64_t hash(const Graph& g) {
    const Graph c = compact(g);
    std::uint64_t h = 0x9e3779b97f4a7c15ull;
    for (const Node& n : c.nodes()) h = (h ^ Graph::node_hash(n)) * 0x100000001b3ull;
    for (const Output& o : c.outputs()) {
        for (char ch : o.name.view()) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ull;
        h = (h ^ static_cast<std::uint64_t>(o.root)) * 0x100000001b3ull;
    }
    return h;
}

// The inputs a graph's outputs read, each once, in order of first use.
constexpr std::vector<Node> inputs_of(const Graph& g) {
    const Graph c = compact(g);
    std::vector<Node> in;
    for (const Node& n : c.nodes())
        if (n.op == Op::input) in.push_back(n);
    return in;
}

}  // namespace lossjit
