#!/usr/bin/env bash
# README command 2: set up, build, and run every test (Catch2 under ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
moeq_configure_and_build -DMOEQ_BUILD_TESTS=ON
cd "$MOEQ_BUILD"
ctest --output-on-failure -j "$(nproc)"
