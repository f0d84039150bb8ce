// The goldens that must hold at compile time, with every compiler the library supports: the
// simplifier and the gradient run inside static_assert. Built by g++ as part of the test build
// and checked by clang 14 as a ctest.
#include <lossjit/lossjit.hpp>

using namespace lossjit::dsl;
using lossjit::grad;
using lossjit::same;
using lossjit::simplify;

constexpr auto u = logits<"u">;
constexpr auto p = probs<"p">;
constexpr auto y = label<"y">;
constexpr auto ce = -sum(p * log(softmax(u)));

static_assert(same(simplify(ce), logsumexp(u) - dot(p, u)));
static_assert(same(grad(ce, u), softmax(u) - p));
static_assert(same(simplify(-log(at(softmax(u), y))), logsumexp(u) - at(u, y)));
static_assert(same(grad(-log(at(softmax(u), y)), u), softmax(u) - onehot(y)));
static_assert(same(simplify(-sum(p * log(exp(u) / sum(exp(u))))), logsumexp(u) - dot(p, u)));
static_assert(same(grad(-sum(p * log(sigmoid(u)) + (1 - p) * log(1 - sigmoid(u))), u), sigmoid(u) - p));
// same() is equality up to canonical order, not "anything equal in value"
static_assert(same(u + p, p + u));
static_assert(!same(u + p, u - p));
