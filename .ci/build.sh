#!/usr/bin/env bash
# The project's one build script, behind the README's two commands:
#   bash .ci/build.sh demo   install what is missing, build, run the quickstart demo
#   bash .ci/build.sh test   install what is missing, build, run the whole test suite
#   bash .ci/build.sh bench  also install the benchmark's peers, build, run the benchmark
# Runs as root on a fresh Debian 12 machine; installs only the Debian packages it lacks.
set -euo pipefail

mode=${1:-demo}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${LOSSJIT_BUILD_DIR:-$here/build}

# Why each package: the compiler and build tools; Boost.Hana (libboost-dev, 1.74); Catch2 2.13
# for the tests; LLVM 19 for the JIT (its CMake config wants zlib and zstd headers); clang 14,
# the second compiler the headers must build with.
packages=(g++ make cmake libboost-dev catch2 llvm-19-dev zlib1g-dev libzstd-dev clang-14)
# The benchmark's peers, only for `bench`: PyTorch (libtorch-dev), oneDNN (libdnnl-dev), and
# matplotlib for the plot.
if [[ $mode == bench ]]; then packages+=(libtorch-dev libdnnl-dev python3-matplotlib); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lossjit: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$jobs"

case "$mode" in
  demo)
    "$build/examples/quickstart"
    ;;
  test)
    ctest --test-dir "$build" --output-on-failure -j"$jobs"
    ;;
  bench)
    "$build/bench/bench_ce" --json "$build/bench.json" --plot "$here/docs/bench.png" "${@:2}"
    ;;
  *)
    echo "usage: bash .ci/build.sh demo|test|bench" >&2
    exit 2
    ;;
esac
