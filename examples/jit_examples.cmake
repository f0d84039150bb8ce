# The JIT's examples (included from examples/CMakeLists.txt when lossjit_jit exists).
lossjit_example(jit_quickstart lossjit::jit)
