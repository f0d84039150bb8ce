// LeakSanitizer's suppressions, compiled into every program of a LOSSJIT_SANITIZE build (the
// runtime asks for them through this weak hook, so `ctest` needs no environment).
// libomp 14, clang's OpenMP runtime, keeps two thread-team records (2880 bytes) unreachable at
// exit after a parallel loop with a reduction (jit/kernel.cpp's weights check): its memory,
// not lossjit's. g++'s libgomp does not.
extern "C" const char* __lsan_default_suppressions() { return "leak:libomp.so\n"; }
