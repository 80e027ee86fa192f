#!/usr/bin/env bash
# Installs the Debian packages that the demo and some tests use, when possible.
# Never fails the build: whatever cannot be installed is reported, and the code that
# needs it skips with a clear message.
set -u
# chromium and chromium-driver: the documentation site's browser test (tests/test_docs.py).
pkgs=(dataset-fashion-mnist espeak-ng libsndfile1 chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "sysdeps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "sysdeps: could not install ${missing[*]}; tests that need them will be skipped" >&2
  fi
else
  echo "sysdeps: missing ${missing[*]} (not root or no apt-get); the demo falls back to" \
       "synthetic data and tests that need them are skipped" >&2
fi
exit 0
