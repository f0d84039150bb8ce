// expect: lossjit: softmax\(v\) needs a vector expression such as logits<"u">, not a number
#include <lossjit/lossjit.hpp>
using namespace lossjit::dsl;
int main() {
    auto e = softmax(3.0);
    (void)e;
}
