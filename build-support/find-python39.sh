# Sourced by ./pants and 3rdparty/lock: prints a working CPython 3.9 interpreter, or returns 1.
# Order: $MODELSEAL_PYTHON39, python3.9 on PATH, then pyenv's installations (newest first).

is_python39() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 9) else 1)' >/dev/null 2>&1
}

find_python39() {
  local candidate
  if [[ -n "${MODELSEAL_PYTHON39:-}" ]]; then
    is_python39 "${MODELSEAL_PYTHON39}" && { printf '%s\n' "${MODELSEAL_PYTHON39}"; return 0; }
    echo "MODELSEAL_PYTHON39=${MODELSEAL_PYTHON39} is not a working CPython 3.9 interpreter" >&2
    return 1
  fi
  # A pyenv shim may be on PATH without 3.9 being selected, so every candidate is run, not trusted.
  candidate="$(command -v python3.9 || true)"
  if [[ -n "${candidate}" ]] && is_python39 "${candidate}"; then
    printf '%s\n' "${candidate}"; return 0
  fi
  local pyenv_root="${PYENV_ROOT:-}"
  if [[ -z "${pyenv_root}" ]] && command -v pyenv >/dev/null 2>&1; then
    pyenv_root="$(pyenv root 2>/dev/null || true)"
  fi
  pyenv_root="${pyenv_root:-${HOME}/.pyenv}"
  for candidate in $(ls -d "${pyenv_root}"/versions/3.9*/bin/python3.9 2>/dev/null | sort -rV); do
    is_python39 "${candidate}" && { printf '%s\n' "${candidate}"; return 0; }
  done
  return 1
}

