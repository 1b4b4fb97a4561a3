"""What the browser tests and the dashboard bench share: Debian's Chromium under Selenium, waits that survive the
page's live re-renders, the login form, and requests sent from the page. Reads ECOWATT_URL, ECOWATT_PASSWORD and
ECOWATT_SCREENSHOTS."""
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["ECOWATT_URL"]
PASSWORD = os.environ["ECOWATT_PASSWORD"]
SHOTS = os.environ["ECOWATT_SCREENSHOTS"]
failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver


def retry_stale(action, attempts=5):
    """Runs `action` again when the page re-rendered the elements it found (a live re-render between find and use)."""
    for attempt in range(attempts):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.3)


def wait(driver, condition, seconds=20):
    """Waits for `condition`; a live re-render between finding an element and reading it only means "not yet"."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def table_devices(driver):
    """The device ids in the fleet table, read in one script: the table re-renders live, so element references may go
    stale between reads."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#devices tbody tr')].map(row => row.dataset.device || '')")


def text(driver, element_id):
    """An element's text, found again when the page re-rendered it between finding and reading."""
    return retry_stale(lambda: driver.find_element(By.ID, element_id).text)


def number(driver, element_id):
    return int(text(driver, element_id))


def console_errors(driver):
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def login(driver, name):
    driver.get(URL + "/#/fleet")

    def fill():
        # Found again on every attempt: the page renders the form once more when its first requests answer.
        form = wait(driver, EC.presence_of_element_located((By.ID, "login-form")))
        for field in ("name", "password"):
            form.find_element(By.NAME, field).clear()
        form.find_element(By.NAME, "name").send_keys(name)
        form.find_element(By.NAME, "password").send_keys(PASSWORD)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    retry_stale(fill)
    try:
        wait(driver, EC.presence_of_element_located((By.ID, "devices")))
    except Exception:
        driver.save_screenshot(os.path.join(SHOTS, f"login-{name}-failed.png"))
        print("page:", driver.find_element(By.ID, "main").text, "console:", driver.get_log("browser"), file=sys.stderr)
        raise


def fetch(driver, method, path, body=None):
    """A request from the page with its session and CSRF token, as a forged click would send it."""
    return driver.execute_async_script(
        """
        const [method, path, body, done] = arguments;
        const me = await (await fetch('/api/v1/auth/me')).json();
        const response = await fetch(path, {method, body: body && JSON.stringify(body),
          headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token || ''}});
        done(response.status);
        """,
        method, path, body)
