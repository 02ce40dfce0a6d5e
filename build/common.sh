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
