# Sourced by the other scripts: where setup put things, and how to build.
MOEQ_CACHE=${MOEQ_CACHE:-$HOME/.cache/moeq}
MOEQ_PYTHON=${MOEQ_PYTHON:-$MOEQ_CACHE/venv/bin/python}
MOEQ_BUILD=${MOEQ_BUILD:-build}
export CCACHE_DIR=${CCACHE_DIR:-$MOEQ_CACHE/ccache}
# Worktrees and clones share cached objects: paths are hashed relative to the source root.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
moeq_configure_and_build() {
  local torch_prefix
  torch_prefix=$("$MOEQ_PYTHON" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$MOEQ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DMOEQ_PYTHON="$MOEQ_PYTHON" "$@" >"$MOEQ_BUILD.cmake.log" 2>&1 \
    || { cat "$MOEQ_BUILD.cmake.log"; return 1; }
  cmake --build "$MOEQ_BUILD" -j "$(nproc)"
}
