#!/usr/bin/env bash
# Source checks that need no build: formatting, layering, whitespace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0

mapfile -t cxx < <(git ls-files -co --exclude-standard -- '*.cpp' '*.hpp' | grep -v '^build')
if command -v clang-format >/dev/null; then
  if ! clang-format --dry-run -Werror "${cxx[@]}" 2>/dev/null; then
    echo "clang-format: these files need formatting:"
    clang-format --dry-run "${cxx[@]}" 2>&1 | grep -o '^[^:]*' | sort -u
    status=1
  fi
fi

# Layering (style.md): the core library knows nothing of the CLI.
if grep -rlE '#include [<"](CLI/|cli/)' include src --include='*.[ch]pp' | grep -v '^src/cli/' |
   grep -v '^src/main.cpp'; then
  echo "layering: the files above include CLI headers outside src/cli"
  status=1
fi
# The product never shells out.
if grep -rnE '\b(system|popen)\s*\(' src include; then
  echo "the product must not call system()/popen()"
  status=1
fi
if grep -rnE '[[:space:]]+$' --include='*.[ch]pp' --include='*.sh' --include='*.txt' src include tests scripts; then
  echo "trailing whitespace"
  status=1
fi
((status)) || echo "source checks passed"
exit "$status"
