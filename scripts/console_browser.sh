#!/usr/bin/env bash
# The admin console in a real browser: builds the demo (`--features sqlite,console,metrics`) and runs
# scripts/console_browser.py, which drives headless Chromium with Selenium through the login, a
# registration with a field error, the secret shown once, a disabling with its confirmation,
# the audit log, the logout, and the same without JavaScript. Screenshots land in
# target/console-screenshots/. Installs what is missing: Debian `chromium` and
# `chromium-driver` (apt-get, needs root), PyPI `selenium`. Works from any directory.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$script_dir/.." && pwd)"
cd "$root"

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "console browser test: installing chromium and chromium-driver (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c "import selenium" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check selenium
fi

example=demo
# shellcheck source=scripts/build_example.sh
source "$script_dir/build_example.sh"

exec python3 "$script_dir/console_browser.py" --binary "$binary" \
    --screenshots "$root/target/console-screenshots"
