// Random valid Graphs from the whole op vocabulary, read from the fuzz input: the inputs a loss
// may have (logits u, probabilities p, a label y, class weights w, a per-row scalar s, a param c,
// the row length K, numbers), then up to `max_ops` ops drawn from ops.hpp's table, each applied
// to earlier nodes of fitting shapes (softmax of a vector, onehot and at of the label, the label
// nowhere else, as the DSL allows). The last node, reduced if it is a vector, is the loss; then,
// as lower() does, the simplified loss and its simplified gradients by u (and s) become the
// outputs, sometimes with the loss as drawn (unsimplified) and an extra scalar or vector output,
// so that the JIT also meets the shapes the simplifier would have rewritten away.
// With `class_weighted` (drawn in fuzz_graph.cpp), the drawn loss is multiplied by at(w, y),
// each row's loss weighted by its class's weight as in PyTorch's weight=: the kernels that
// Batch::weighted_mean("w") is for (a label and a weights input both survive a random draw
// rarely otherwise).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "byte_reader.hpp"
#include "lossjit/grad.hpp"
#include "lossjit/print.hpp"

namespace fuzz {

using namespace lossjit;

struct RandomGraph {
    Graph g;  // compacted: outputs "loss", "grad.u", maybe "grad.s", "extra", "vec"
    std::vector<std::pair<std::string, double>> params;
    std::string drawn;  // the loss as drawn, printed, for reports
};

inline constexpr int max_ops = 10;  // bounds JIT compile time, and the gradient's size

class GraphDrawer {
public:
    explicit GraphDrawer(ByteReader& in, bool class_weighted = false) : in_(in), class_weighted_(class_weighted) {}

    RandomGraph draw() {
        pool_.push_back(g_.input("u", InputKind::logits));
        if (in_.one_in(2)) pool_.push_back(g_.input("p", InputKind::probs));
        if (in_.one_in(3)) pool_.push_back(weights());
        if (in_.one_in(3)) pool_.push_back(g_.input("s", InputKind::scalar));
        if (in_.one_in(4)) pool_.push_back(g_.row_length());
        if (in_.one_in(4)) {
            static constexpr double values[] = {0.1, 0.5, 2, 3, -1.5, 1e-3};
            out_.params.emplace_back("c", values[in_.pick(std::size(values))]);
            pool_.push_back(g_.input("c", InputKind::param));
        }
        const int ops = 1 + static_cast<int>(in_.pick(max_ops));
        for (int i = 0; i < ops; ++i) pool_.push_back(draw_op());
        int loss = pool_.back();
        if (g_[loss].shape == Shape::vector) loss = g_.apply(draw_reduction(), loss);
        if (class_weighted_) loss = g_.apply(Op::mul, g_.apply(Op::at, weights(), label()), loss);
        out_.drawn = to_string(g_, loss);
        finish(loss);
        return std::move(out_);
    }

private:
    ByteReader& in_;
    Graph g_;
    std::vector<int> pool_;  // real-valued nodes, in order of creation (the label is not one)
    int label_ = -1, weights_ = -1;
    bool class_weighted_;
    RandomGraph out_;

    int label() { return label_ >= 0 ? label_ : label_ = g_.input("y", InputKind::label); }
    int weights() { return weights_ >= 0 ? weights_ : weights_ = g_.input("w", InputKind::weights); }

    // An argument: often one of the newest nodes (deep graphs), sometimes a number.
    int arg(bool vector_only) {
        std::vector<int> fit;
        for (int n : pool_)
            if (!vector_only || g_[n].shape == Shape::vector) fit.push_back(n);
        if (!vector_only && in_.one_in(8)) {
            static constexpr double numbers[] = {0, 1, -1, 0.5, 2, 3, -0.25, 1e-3, 100, 1e10};
            return g_.constant(numbers[in_.pick(std::size(numbers))]);
        }
        const unsigned recent = fit.size() < 3 ? static_cast<unsigned>(fit.size()) : 3u;
        if (in_.one_in(2)) return fit[fit.size() - 1 - in_.pick(recent)];
        return fit[in_.pick(static_cast<unsigned>(fit.size()))];
    }

    Op draw_reduction() {
        static constexpr Op reductions[] = {Op::sum, Op::mean, Op::logsumexp, Op::amax};
        return reductions[in_.pick(std::size(reductions))];
    }

    int draw_op() {
        // every op that takes arguments, straight from the op table: a new op is fuzzed too
        std::vector<Op> ops;
        for (const OpInfo& d : op_table)
            if (d.arity > 0) ops.push_back(d.op);
        const Op op = ops[in_.pick(static_cast<unsigned>(ops.size()))];
        // Arguments are drawn into named locals, first then second: the order in which a call's
        // arguments are evaluated is up to the compiler, and an input must draw the same case
        // in the clang fuzzer and the g++ replayer.
        switch (info(op).cls) {
        case OpClass::vector_map:
            if (op == Op::onehot) return g_.apply(op, label());
            return g_.apply(op, arg(true));
        case OpClass::reduction: {
            if (op == Op::at) {
                const int a = arg(!in_.one_in(8));
                return g_.apply(op, a, label());
            }
            // reductions of a scalar fold (sum(s) = s); rarer, like in real losses
            const int a = arg(!in_.one_in(8));
            if (op != Op::dot) return g_.apply(op, a);
            const int b = arg(false);
            return g_.apply(op, a, b);
        }
        default: {
            const int a = arg(false);
            if (info(op).arity == 1) return g_.apply(op, a);
            const int b = arg(false);
            return g_.apply(op, a, b);
        }
        }
    }

    // The outputs, as lower() builds them: the simplified loss and its simplified gradients,
    // each gradient with its input's shape.
    void finish(int drawn_loss) {
        Term t{g_, drawn_loss, {}, false};
        simplify_in_place(t);
        Graph& o = out_.g;
        auto copy = [&o](const Graph& from, int root) {
            std::vector<int> memo(static_cast<std::size_t>(from.size()), -1);
            return copy_into(o, from, root, memo);
        };
        o.add_output("loss", in_.one_in(4) ? copy(g_, drawn_loss) : copy(t.graph, t.root));
        for (const auto& [name, kind] : {std::pair{"u", InputKind::logits}, std::pair{"s", InputKind::scalar}}) {
            if (kind == InputKind::scalar && !uses(g_, drawn_loss, name)) continue;
            const Term d = gradient(t, name);
            int root = copy(d.graph, d.root);
            if (o[root].shape != shape_of(kind)) {
                const int zero = o.constant(0), input = o.input(name, kind);  // in this order
                root = o.apply(Op::add, root, o.apply(Op::mul, zero, input));
            }
            o.add_output(Name("grad.", name), root);
        }
        for (int n : pool_) {  // an intermediate value as an extra output, now and then
            if (g_[n].op == Op::input || g_[n].op == Op::row_length || !in_.one_in(6)) continue;
            o.add_output(g_[n].shape == Shape::vector ? "vec" : "extra", copy(g_, n));
            break;
        }
        o = compact(o);
    }

    static bool uses(const Graph& g, int root, std::string_view name) {
        const Node& n = g[root];
        if (n.op == Op::input) return n.name.view() == name;
        return (n.a >= 0 && uses(g, n.a, name)) || (n.b >= 0 && uses(g, n.b, name));
    }
};

}  // namespace fuzz
