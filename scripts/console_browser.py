#!/usr/bin/env python3
"""The admin console in a real browser: headless Chromium driven by Selenium against the demo.

Starts the demo binary (built with `--features sqlite,console,metrics`) on a free loopback port with a
temporary DEMO_DB and a known DEMO_USER_PASSWORD, then, as a person would:

  1. opens /console and is sent to the demo's login page (through /oauth2/authorize, PKCE);
  2. logs in as `demo` and lands on the clients list;
  3. registers a client with a bad lifetime: the parser's error is shown beside the field;
  4. registers it properly, under a name that is an XSS payload: the secret page says it is shown
     once, the copy button appears (JavaScript on), no script from the name runs anywhere;
  5. opens the client, goes through the confirmation step to disable it;
  6. reads the audit log, filtered to the client;
  7. logs out;
  8. with JavaScript off, logs in and registers a client: everything works, the copy button
     stays hidden;

and checks that the browser reported no Content-Security-Policy violation (the stylesheet and
script are the console's own files) and that the stylesheet applied. Screenshots of every page
go to the directory given by --screenshots (default target/console-screenshots).

    python3 scripts/console_browser.py --binary target/debug/examples/demo

Needs: chromium and chromium-driver (Debian), selenium (PyPI). Exit code 0 when every check
passed.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

PASSWORD = "browser-test-password-0123456789"
XSS_NAME = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script> Billing'

failures = []
passed = 0


def check(what: str, ok: bool, evidence: str = "") -> bool:
    global passed
    if ok:
        passed += 1
        print(f"ok: {what}")
    else:
        failures.append(what)
        print(f"FAILED: {what}\n{evidence}", file=sys.stderr)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(binary: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.update(BIND=f"127.0.0.1:{port}", DEMO_DB=str(workdir / "demo.db"),
               DEMO_USER_PASSWORD=PASSWORD, NO_COLOR="1", RUST_LOG="warn")
    log = open(workdir / "demo.log", "wb")
    proc = subprocess.Popen([binary], env=env, cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited: {(workdir / 'demo.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/public", timeout=1):
                return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the demo did not answer within 30 s")


def browser(javascript: bool) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if os.path.exists("/usr/bin/chromium"):
        options.binary_location = "/usr/bin/chromium"
    driver_path = "/usr/bin/chromedriver"
    service = Service(driver_path) if os.path.exists(driver_path) else Service()
    return webdriver.Chrome(service=service, options=options)


def shot(driver, directory: Path, name: str) -> None:
    driver.save_screenshot(str(directory / f"{name}.png"))


def csp_violations(driver) -> list:
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]
            or "Refused to" in entry["message"]]


def no_alert(driver) -> bool:
    try:
        driver.switch_to.alert
        return False
    except NoAlertPresentException:
        return True


def gone(element) -> bool:
    """Whether `element` left the document. Selenium's `staleness_of` knows only
    StaleElementReferenceException; Chromium may instead answer a lookup during the navigation
    with an inspector error ("Node with given id does not belong to the document"), which
    means the same (seen once in a CI run)."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise


def navigate(driver, by: str, what: str) -> None:
    """Clicks a link or submit button and waits for the next page: a click returns before the
    navigation ends, and reading the old page then fails with a stale element."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()
    WebDriverWait(driver, 20).until(lambda _: gone(old))
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def fill(driver, field_id: str, value: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(value)


def login(driver, base: str) -> None:
    driver.get(f"{base}/console")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    navigate(driver, By.CSS_SELECTOR, "button[type=submit]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the demo example binary")
    parser.add_argument("--screenshots", default="target/console-screenshots")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_demo(args.binary, Path(tmp))
        driver = browser(javascript=True)
        try:
            # 1. To the login page, through /authorize.
            driver.get(f"{base}/console")
            check("/console without a session goes to the demo's login page",
                  driver.find_elements(By.NAME, "password") != []
                  and "/oauth2/authorize?" in driver.current_url
                  and "code_challenge_method=S256" in driver.current_url,
                  driver.current_url)
            shot(driver, shots, "1-login")

            # 2. Logged in: the clients list.
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            navigate(driver, By.CSS_SELECTOR, "button[type=submit]")
            check("after the login, the console's clients page",
                  driver.current_url == f"{base}/console"
                  and driver.find_element(By.TAG_NAME, "h1").text == "Clients",
                  driver.current_url + "\n" + driver.page_source[:2000])
            check("the demo client and the console's own client are listed",
                  "demo-client" in driver.page_source
                  and "tower-oauth2-console" in driver.page_source)
            header = driver.find_element(By.TAG_NAME, "header")
            check("the console's stylesheet applied (header background white)",
                  header.value_of_css_property("background-color") in
                  ("rgba(255, 255, 255, 1)", "rgb(255, 255, 255)"),
                  header.value_of_css_property("background-color"))
            cookies = {c["name"]: c for c in driver.get_cookies()}
            session = cookies.get("tower_oauth2_console", {})
            check("the session cookie is HttpOnly and SameSite=Strict",
                  session.get("httpOnly") is True and session.get("sameSite") == "Strict",
                  str(session))
            shot(driver, shots, "2-clients")

            # 3. A bad lifetime: the error beside the field.
            navigate(driver, By.LINK_TEXT, "Register")
            fill(driver, "name", "billing")
            fill(driver, "scopes", "events:read")
            fill(driver, "access_token_lifetime", "1h 30x")
            navigate(driver, By.CSS_SELECTOR, "form.client button[type=submit]")
            error = driver.find_elements(By.ID, "access_token_lifetime-error")
            check("the lifetime parser's error is shown beside the field",
                  error != [] and "unknown unit `x`" in error[0].text,
                  driver.page_source[:3000])
            if error:
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", error[0])
            shot(driver, shots, "3-register-error")

            # 4. Registered, under a hostile name: the secret once, nothing executed.
            fill(driver, "name", XSS_NAME)
            fill(driver, "access_token_lifetime", "1h 30min")
            fill(driver, "contacts", "ops@example.com")
            navigate(driver, By.CSS_SELECTOR, "form.client button[type=submit]")
            body = driver.find_element(By.TAG_NAME, "body").text
            check("the secret page says it is shown once",
                  "you will not see it again" in body, body)
            secret = driver.find_element(By.ID, "secret").text
            check("the secret is on the page", len(secret) >= 43, secret)
            copy = driver.find_element(By.CSS_SELECTOR, "button[data-copy]")
            check("the copy button is shown (JavaScript on)", copy.is_displayed())
            check("the hostile name is text, not markup",
                  XSS_NAME in body and driver.title != "pwned" and no_alert(driver),
                  driver.title)
            shot(driver, shots, "4-secret")

            # 5. The client's page, then disable it through its confirmation step.
            navigate(driver, By.LINK_TEXT, "Go to the client")
            check("the client's page does not show the secret",
                  secret not in driver.page_source)
            check("the client's page shows the name as text", XSS_NAME in
                  driver.find_element(By.TAG_NAME, "h1").text and driver.title != "pwned")
            shot(driver, shots, "5-client")
            client_url = driver.current_url
            navigate(driver, By.LINK_TEXT, "Disable")
            check("disabling asks for confirmation",
                  "Disable this client?" in driver.find_element(By.TAG_NAME, "h1").text)
            shot(driver, shots, "6-confirm-disable")
            navigate(driver, By.CSS_SELECTOR, "main form button[type=submit]")
            status = driver.find_element(By.CSS_SELECTOR, "h1 .status").text
            check("the client is disabled", status == "disabled" and
                  driver.current_url.startswith(client_url), status)

            # 6. The audit log, filtered to the client.
            navigate(driver, By.LINK_TEXT, "This client's audit log")
            rows = driver.find_elements(By.CSS_SELECTOR, "table.audit tbody tr")
            text = driver.find_element(By.TAG_NAME, "main").text
            check("the audit log lists the registration and the disabling",
                  len(rows) >= 2 and "register" in text and "disabled" in text, text[:2000])
            shot(driver, shots, "7-audit")

            check("no Content-Security-Policy violation was reported",
                  csp_violations(driver) == [], "\n".join(csp_violations(driver)))

            # 7. Log out.
            old_session = driver.get_cookie("tower_oauth2_console")
            navigate(driver, By.CSS_SELECTOR, "form.logout button")
            check("logging out says so, and clears the session cookie",
                  driver.find_element(By.TAG_NAME, "h1").text == "Logged out"
                  and driver.get_cookie("tower_oauth2_console") is None)
            shot(driver, shots, "8-logged-out")
            # Back in through /authorize; the demo's own login is still on, so no password is
            # asked: a new console session.
            driver.get(f"{base}/console")
            new_session = driver.get_cookie("tower_oauth2_console")
            check("after logging out, a visit logs in again with a new session",
                  new_session is not None and old_session is not None
                  and new_session["value"] != old_session["value"], str(new_session))
        finally:
            driver.quit()

        # 8. Without JavaScript.
        driver = browser(javascript=False)
        try:
            login(driver, base)
            driver.get(f"{base}/console/clients/new")
            fill(driver, "name", "no-script client")
            navigate(driver, By.CSS_SELECTOR, "form.client button[type=submit]")
            shot(driver, shots, "9-no-javascript")
            body = driver.find_element(By.TAG_NAME, "body").text
            copy = driver.find_elements(By.CSS_SELECTOR, "button[data-copy]")
            check("without JavaScript: registered, secret shown, copy button hidden",
                  "you will not see it again" in body and copy != []
                  and not copy[0].is_displayed(), driver.page_source)
        finally:
            driver.quit()
            proc.terminate()
            proc.wait(timeout=10)

    print(f"\nconsole in a browser: {passed} passed, {len(failures)} failed "
          f"(screenshots in {shots})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
