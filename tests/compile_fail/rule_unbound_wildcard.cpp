// expect: a wildcard on the right is not bound on the left
#include <lossjit/rules/rule.hpp>
using namespace lossjit::dsl;
using namespace lossjit::rules;
constexpr lossjit::Rule bad = lossjit::rule("bad", log(exp(_x)), _y);  // _y comes from nowhere
int main() {}
