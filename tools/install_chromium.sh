#!/usr/bin/env bash
# The browser of the browser tests (tests/e2e/test_browser.py): Debian's or Ubuntu's `chromium` package,
# driven by Playwright. Installed with apt-get when it is missing and this user may (root, or sudo without
# a password); otherwise one line says how, and those tests are skipped. Never a browser from anywhere
# else (no `playwright install`). Never fails `make setup`.
set -u
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
how="install Debian's chromium package (sudo apt-get install chromium) to run the browser tests; they are skipped without it"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "no chromium: $how"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "no chromium: $how"
    exit 0
fi
echo "installing Debian's chromium for the browser tests (apt-get) ..."
log=$(mktemp)
if "${as_root[@]}" apt-get update -qq >"$log" 2>&1 &&
   "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >>"$log" 2>&1; then
    echo "chromium installed: $(command -v chromium)"
else
    echo "could not install chromium with apt-get (see $log): $how"
fi
exit 0
