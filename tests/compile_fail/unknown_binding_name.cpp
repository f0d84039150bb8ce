// expect: lossjit: evaluate: a bind<"name"> names an input the expression does not have
#include <lossjit/lossjit.hpp>
#include <vector>
using namespace lossjit::dsl;
int main() {
    constexpr auto u = logits<"u">;
    std::vector<double> row{1, 2, 3};
    auto l = lossjit::evaluate(logsumexp(u), lossjit::bind<"q">(row));  // the input is "u"
    (void)l;
}
