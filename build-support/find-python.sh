# Sourced by ./pants and 3rdparty/lock. `find_python 3.9` prints a working CPython 3.9 interpreter,
# or returns 1. Order: $MODELSEAL_PYTHON39 (for 3.9), python3.9 on PATH, then pyenv's newest 3.9.*.

is_python() {  # is_python INTERPRETER 3.N
  "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$2' else 1)" >/dev/null 2>&1
}

find_python() {
  local version="$1" candidate override=""
  [[ "${version}" == "3.9" ]] && override="${MODELSEAL_PYTHON39:-}"
  if [[ -n "${override}" ]]; then
    is_python "${override}" "${version}" && { printf '%s\n' "${override}"; return 0; }
    echo "MODELSEAL_PYTHON39=${override} is not a working CPython 3.9 interpreter" >&2
    return 1
  fi
  # A pyenv shim may be on PATH without that version being selected: run candidates, don't trust.
  candidate="$(command -v "python${version}" || true)"
  if [[ -n "${candidate}" ]] && is_python "${candidate}" "${version}"; then
    printf '%s\n' "${candidate}"; return 0
  fi
  local pyenv_root="${PYENV_ROOT:-}"
  if [[ -z "${pyenv_root}" ]] && command -v pyenv >/dev/null 2>&1; then
    pyenv_root="$(pyenv root 2>/dev/null || true)"
  fi
  pyenv_root="${pyenv_root:-${HOME}/.pyenv}"
  for candidate in $(ls -d "${pyenv_root}/versions/${version}".*/bin/"python${version}" 2>/dev/null | sort -rV); do
    is_python "${candidate}" "${version}" && { printf '%s\n' "${candidate}"; return 0; }
  done
  return 1
}
