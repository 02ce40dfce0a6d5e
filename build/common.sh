# Shared by build/build, build/release-check and build/demo (sourced, bash).
# REPO is the repository root; PY the Python that builds and runs the project tools.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The project's venv Python, else python3 (CCFLUX_PYTHON overrides both).
project_python() {
  if [ -n "${CCFLUX_PYTHON:-}" ]; then
    printf '%s\n' "$CCFLUX_PYTHON"
  elif [ -x "$REPO/.venv/bin/python" ]; then
    printf '%s\n' "$REPO/.venv/bin/python"
  elif [ -x "$REPO/.venv/Scripts/python.exe" ]; then
    printf '%s\n' "$REPO/.venv/Scripts/python.exe"
  else
    command -v python3
  fi
}

# <os>-<arch> of this machine, named as plugin/scripts/ccflux-hook names it (the tests check
# that the two agree): os = linux|darwin|windows, arch = `uname -m`, aarch64 -> arm64,
# amd64 -> x86_64.
platform_dir() {
  local os arch
  read -r os arch <<<"$(uname -sm)"
  case $os in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT) os=windows ;;
    *) os=$(printf %s "$os" | tr '[:upper:]' '[:lower:]') ;;
  esac
  case $arch in
    aarch64 | ARM64) arch=arm64 ;;
    amd64 | AMD64 | x64) arch=x86_64 ;;
  esac
  printf '%s-%s\n' "$os" "$arch"
}

# The frozen ccflux for this machine.
frozen_binary() {
  local exe=""
  case $(platform_dir) in windows-*) exe=.exe ;; esac
  printf '%s\n' "$REPO/plugin/bin/$(platform_dir)/ccflux/ccflux$exe"
}

# __version__ of hook/ccflux/__init__.py (read as text: no import, no venv needed).
package_version() {
  sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' "$REPO/hook/ccflux/__init__.py" | head -n 1
}

section() { printf '\n==== %s ====\n' "$*"; }

# The pinned Claude Code client (CONTRACT: tests and the demo install their own copy).
CLAUDE_VERSION=2.1.330
CLAUDE_DIR=${CCFLUX_E2E_CLAUDE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ccflux-e2e/claude-code-$CLAUDE_VERSION}
CLAUDE_BIN=$CLAUDE_DIR/node_modules/.bin/claude

# Install the pinned client with npm unless it is there already.
ensure_claude() {
  if [ "$("$CLAUDE_BIN" --version 2>/dev/null </dev/null | cut -d' ' -f1)" = "$CLAUDE_VERSION" ]; then
    echo "Claude Code $CLAUDE_VERSION: $CLAUDE_BIN"
    return 0
  fi
  command -v npm >/dev/null || { echo "npm is needed to install Claude Code $CLAUDE_VERSION" >&2; return 1; }
  mkdir -p "$CLAUDE_DIR"
  npm install --prefix "$CLAUDE_DIR" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_VERSION" </dev/null
  "$CLAUDE_BIN" --version </dev/null
}

# The project's venv with the test extras (which the demo and the tests need).
ensure_venv() {
  if [ ! -x "$REPO/.venv/bin/python" ]; then
    python3 -m venv "$REPO/.venv"
  fi
  if ! "$REPO/.venv/bin/python" -c 'import ccflux, ccflux_receiver, trustme, PyInstaller' 2>/dev/null; then
    (cd "$REPO" && PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install --quiet -e '.[test]')
  fi
}

# The frozen binary, rebuilt when missing or older than any hook source or the build recipe.
ensure_frozen() {
  local bin
  bin=$(frozen_binary)
  if [ -x "$bin" ] && [ -z "$(find "$REPO/hook/ccflux" "$REPO/build/ccflux.spec" "$REPO/build/entry_ccflux.py" \
    -newer "$bin" -name '*.py' -o -newer "$bin" -name '*.spec' 2>/dev/null | head -n 1)" ]; then
    echo "frozen ccflux up to date: $bin"
  else
    "$REPO/build/build"
  fi
}
