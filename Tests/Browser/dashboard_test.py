"""The dashboard in a real browser (issue 20): Debian's Chromium driven by Selenium against a live server fed by
`ecowatt simulate`. Run by scripts/browser-test.sh, which starts the server, seeds users and devices and passes:
ECOWATT_URL, ECOWATT_ADMIN_PASSWORD, ECOWATT_OPERATOR, ECOWATT_VIEWER, ECOWATT_PASSWORD, ECOWATT_XSS_DEVICE,
ECOWATT_RESULT_DEVICE, ECOWATT_SCREENSHOTS, ECOWATT_DEVICE_PREFIX, ECOWATT_DEVICES."""
import json
import os
import sys
import time
import urllib.request

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from browser_harness import (URL, PASSWORD, SHOTS, failures, check, browser, retry_stale, wait, table_devices, text,
                             number, console_errors, login, fetch)

PREFIX = os.environ["ECOWATT_DEVICE_PREFIX"]
DEVICES = int(os.environ["ECOWATT_DEVICES"])
XSS_DEVICE = os.environ["ECOWATT_XSS_DEVICE"]
XSS_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_DESCRIPTION = '<img src=x onerror="window.__xss=5">'


def operator_session():
    driver = browser()
    try:
        # The console capture works: an error logged by the page is seen.
        driver.get(URL + "/")
        driver.execute_script("console.error('console-capture-probe')")
        check(any("console-capture-probe" in message for message in console_errors(driver)), "console errors are captured")

        login(driver, os.environ["ECOWATT_OPERATOR"])
        driver.save_screenshot(os.path.join(SHOTS, "fleet.png"))
        # Devices that register while the page is open are counted live.
        try:
            wait(driver, lambda d: int(d.find_element(By.ID, "count-devices").text) >= DEVICES, 30)
        except Exception:
            pass
        count = number(driver, "count-devices")
        check(count >= DEVICES, f"the fleet counts the simulated devices ({count} >= {DEVICES})")
        def listed(d):
            d.refresh()
            wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#devices tbody tr"))
            return sum(1 for device in table_devices(d) if device.startswith(PREFIX)) == DEVICES
        try:
            wait(driver, listed, 60)
        except Exception:
            pass
        check(retry_stale(lambda: listed(driver)), f"the table lists the {DEVICES} simulated devices")

        # The counts update live (no reload): a refused upload raises "uploads refused".
        wait(driver, lambda d: "live" in d.find_element(By.ID, "live").text)
        before = number(driver, "count-rejected")
        request = urllib.request.Request(URL + "/aggregated/LIVE-PROBE", data=b'{"nonce":1,"payload":"e30=","mac":"00"}',
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError:
            pass
        updated = wait(driver, lambda d: int(d.find_element(By.ID, "count-rejected").text) > before, 15)
        check(updated, "the fleet counts update live")

        # The XSS case: a device name full of markup is shown as text, nothing runs.
        cell = driver.find_element(By.CSS_SELECTOR, f'#devices tr[data-device="{XSS_DEVICE}"] td:nth-child(2)')
        check(cell.text == XSS_NAME, "a device name with markup renders as text")
        check(not cell.find_elements(By.TAG_NAME, "img"), "no element is made from a device name")
        check(driver.execute_script("return window.__xss === undefined"), "no script from a device name ran")
        # And on its device page: a diagnostics entry and a fault report made of markup.
        driver.get(f"{URL}/#/device/{XSS_DEVICE}")
        wait(driver, EC.presence_of_element_located((By.ID, "diagnostics")))
        diagnostic = driver.find_element(By.CSS_SELECTOR, "#diagnostics tr.diagnostic td").text
        check("<img src=x onerror=" in diagnostic and "window.__xss=3" in diagnostic, f"a diagnostics entry with markup renders as text ({diagnostic})")
        location = driver.find_element(By.ID, "device-details").text
        check("<b>roof</b>" in location and "window.__xss=7" in location, "a device location with markup renders as text")
        fault = driver.find_element(By.CSS_SELECTOR, "#reports tr.fault").text
        check("<b>crc</b>" in fault and 'window.__xss=4' in fault, "a fault report with markup renders as text")
        check(not driver.find_elements(By.CSS_SELECTOR, "#diagnostics img, #reports img, #reports b, #device-details img, #device-details b"),
              "no element is made from device reports or the location")
        check(driver.execute_script("return window.__xss === undefined"), "no script from device reports ran")
        driver.get(f"{URL}/#/device/{os.environ['ECOWATT_RESULT_DEVICE']}")
        result = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "#commands tbody tr"))).text
        check("window.__xss=6" in result and not driver.find_elements(By.CSS_SELECTOR, "#commands img"),
              f"a command result with markup renders as text ({result})")
        check(driver.execute_script("return window.__xss === undefined"), "no script from a command result ran")
        driver.get(URL + "/#/fleet")
        wait(driver, EC.presence_of_element_located((By.ID, "devices")))

        # Filter on the server: status and prefix.
        Select(driver.find_element(By.NAME, "status")).select_by_value("online")
        driver.find_element(By.NAME, "prefix").send_keys(PREFIX)
        old = driver.find_element(By.ID, "devices")
        driver.find_element(By.CSS_SELECTOR, "#filters button").click()
        wait(driver, lambda d: "status=online" in d.current_url)
        wait(driver, EC.staleness_of(old))
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#devices tbody tr"))
        check(all(device.startswith(PREFIX) for device in table_devices(driver)), "the prefix filter applies")

        # A device page: latest values, and a command queued through the form reaches `completed`.
        device = PREFIX + "001"
        driver.get(f"{URL}/#/device/{device}")
        wait(driver, EC.presence_of_element_located((By.ID, "command-form")))
        check("No telemetry yet." not in driver.find_element(By.ID, "latest").text, "the device page shows latest values")
        # The chart (Chart.js from Debian) gains points without a reload, from the live stream.
        wait(driver, lambda d: d.execute_script("return window.ecowattChart && window.ecowattChart.points > 0"))
        points = driver.execute_script("return window.ecowattChart.points")
        grown = wait(driver, lambda d: d.execute_script("return window.ecowattChart.points") > points, 30)
        check(grown, f"the chart gains points live (from {points})")
        check("resolution" in driver.find_element(By.ID, "chart-status").text, "the chart says its resolution")
        check(bool(driver.find_elements(By.CSS_SELECTOR, "#packets tr.packet")), "the device page lists its latest packets")
        driver.save_screenshot(os.path.join(SHOTS, "device.png"))
        Select(driver.find_element(By.NAME, "action")).select_by_value("get_power_stats")
        driver.find_element(By.CSS_SELECTOR, "#command-form button").click()
        wait(driver, lambda d: "queued" in d.find_element(By.ID, "toast").text)
        # Its state arrives live: no reload.
        try:
            wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#commands .command-status").text == "completed", 60)
        except Exception:
            pass
        status = driver.find_element(By.CSS_SELECTOR, "#commands .command-status").text
        check(status == "completed", f"the queued command reached completed, shown live ({status})")
        check(bool(driver.find_elements(By.ID, "security")), "the device page has its security events section")
        errors = [m for m in console_errors(driver) if "console-capture-probe" not in m]
        check(not errors, f"no console errors ({errors})")
        fleet_pages(driver)
        driver.get(f"{URL}/#/device/{device}")
        wait(driver, EC.presence_of_element_located((By.ID, "command-form")))
        # A refused command shows the server's reason inline (Chromium logs the 422 as a failed resource: expected).
        Select(driver.find_element(By.NAME, "action")).select_by_value("write_register")
        driver.find_element(By.CSS_SELECTOR, "#command-form button").click()
        message = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#command-form [role=alert]").text)
        check(len(message) > 0, f"a refused command shows the server's reason ({message})")
        configuration(driver, device)
        firmware(driver)
    finally:
        driver.quit()


def fleet_pages(driver):
    """Commands across the fleet, Security over time, Diagnostics with filters."""
    driver.get(URL + "/#/commands")
    wait(driver, EC.presence_of_element_located((By.ID, "fleet-commands")))
    statuses = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#fleet-commands .command-status")]
    check("completed" in statuses, f"the Commands page lists the fleet's commands ({statuses[:5]})")
    Select(driver.find_element(By.NAME, "status")).select_by_value("completed")
    driver.find_element(By.CSS_SELECTOR, "#command-filters button").click()
    wait(driver, lambda d: "status=completed" in d.current_url)
    time.sleep(0.5)
    statuses = [cell.text for cell in wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#fleet-commands .command-status"))]
    check(statuses and all(status == "completed" for status in statuses), f"the status filter applies ({statuses[:5]})")
    driver.save_screenshot(os.path.join(SHOTS, "commands.png"))

    driver.get(URL + "/#/security?hours=1")
    events = wait(driver, EC.presence_of_element_located((By.ID, "security-events")))
    check("LIVE-PROBE" in events.text, "the Security page lists the refused upload")
    check("security/" in driver.find_element(By.ID, "security-totals").text, "the Security page counts refusals by reason")
    check(bool(driver.find_elements(By.CSS_SELECTOR, "#security-chart canvas")), "the Security page charts refusals over time")
    driver.save_screenshot(os.path.join(SHOTS, "security.png"))

    driver.get(URL + "/#/diagnostics")

    def filter_diagnostics():
        Select(wait(driver, EC.presence_of_element_located((By.NAME, "device")))).select_by_value(XSS_DEVICE)
        search = driver.find_element(By.NAME, "q")
        search.clear()
        search.send_keys("onerror")
        driver.find_element(By.CSS_SELECTOR, "#diagnostics-filters button").click()

    # The page renders again once its device list arrives: a form found before that goes stale (it did in CI).
    retry_stale(filter_diagnostics)
    entry = wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "#diagnostic-entries tr.diagnostic td"))).text
    check("window.__xss=3" in entry, f"the Diagnostics page filters one device's entries, as text ({entry})")
    check(not driver.find_elements(By.CSS_SELECTOR, "#diagnostic-entries img"), "no element is made from a diagnostics entry")
    driver.save_screenshot(os.path.join(SHOTS, "diagnostics.png"))


def configuration(driver, device):
    """A refused change shows the server's reason; an accepted one is delivered and applied by the device."""
    def request(text):
        editor = driver.find_element(By.CSS_SELECTOR, "#config-form textarea")
        editor.clear()
        editor.send_keys(text)
        driver.find_element(By.CSS_SELECTOR, "#config-form button").click()
    retry_stale(lambda: request('{"sampling_interval": -5}'))
    refusal = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#config-form [role=alert]").text)
    check("sampling_interval" in refusal, f"a refused configuration shows the server's reason ({refusal})")
    retry_stale(lambda: request('{"sampling_interval": 10}'))
    wait(driver, lambda d: "requested" in d.find_element(By.ID, "toast").text)
    check("sampling_interval" in text(driver, "config-pending"), "the requested change shows as pending")
    applied = ""
    deadline = time.time() + 90
    while time.time() < deadline:
        driver.get(f"{URL}/#/device/{device}")
        driver.refresh()
        applied = wait(driver, EC.presence_of_element_located((By.ID, "config-running"))).text
        if "sampling_interval" in applied and "10" in applied and "nothing pending" in driver.find_element(By.ID, "config-pending").text:
            break
        time.sleep(3)
    check("sampling_interval" in applied and "nothing pending" in driver.find_element(By.ID, "config-pending").text,
          f"the device applied the configuration ({applied!r})")
    driver.save_screenshot(os.path.join(SHOTS, "configuration.png"))


def device_firmware(device):
    request = urllib.request.Request(f"{URL}/api/v1/devices/{device}", headers={"Authorization": "Bearer " + os.environ["ECOWATT_TOKEN"]})
    return json.load(urllib.request.urlopen(request, timeout=10)).get("firmware_version")


def firmware(driver):
    """Upload an image with its progress bar, deploy it, and watch a simulated device install it."""
    driver.get(URL + "/#/firmware")
    def upload():
        form = wait(driver, EC.presence_of_element_located((By.ID, "upload-form")))
        form.find_element(By.NAME, "image").send_keys(os.environ["ECOWATT_IMAGE"])
        for field, text in (("version", "9.9.9"), ("description", XSS_DESCRIPTION)):
            form.find_element(By.NAME, field).clear()
            form.find_element(By.NAME, field).send_keys(text)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    retry_stale(upload)
    try:
        wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, '#firmwares tr[data-version="9.9.9"]')), 60)
    except Exception:
        pass
    check(bool(driver.find_elements(By.CSS_SELECTOR, '#firmwares tr[data-version="9.9.9"]')), "an image uploaded through the page is listed")
    description = driver.find_element(By.CSS_SELECTOR, '#firmwares tr[data-version="9.9.9"] .firmware-description')
    check(description.text == XSS_DESCRIPTION and not description.find_elements(By.TAG_NAME, "img"),
          f"a firmware description with markup renders as text ({description.text})")
    driver.save_screenshot(os.path.join(SHOTS, "firmware.png"))
    def deploy():
        form = driver.find_element(By.ID, "deploy-form")
        Select(form.find_element(By.NAME, "version")).select_by_value("9.9.9")
        form.find_element(By.NAME, "devices").clear()
        form.find_element(By.NAME, "devices").send_keys(PREFIX + "002")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    retry_stale(deploy)
    wait(driver, lambda d: "created" in d.find_element(By.ID, "toast").text)
    deadline = time.time() + 90
    version = None
    seen = False
    while time.time() < deadline and version != "9.9.9":
        time.sleep(1)
        # The page is not reloaded: the download's row is pushed by the server.
        seen = seen or bool(driver.find_elements(By.CSS_SELECTOR, f'#downloads tr[data-download="{PREFIX}002"]'))
        version = device_firmware(PREFIX + "002")
    check(version == "9.9.9", f"the simulated device installed the deployed image ({version})")
    check(seen, "the firmware page showed the download live")
    rollout(driver)
    check(driver.execute_script("return window.__xss === undefined"), "no script from a firmware description ran")


def rollout(driver):
    """A staged rollout started from the page, watched live to its first healthy devices."""
    driver.get(URL + "/#/rollouts")
    def start():
        form = wait(driver, EC.presence_of_element_located((By.ID, "rollout-form")))
        Select(form.find_element(By.NAME, "version")).select_by_value("9.9.9")
        Select(form.find_element(By.NAME, "target")).select_by_value("prefix")
        form.find_element(By.NAME, "value").clear()
        form.find_element(By.NAME, "value").send_keys(PREFIX)
        waves = form.find_element(By.NAME, "waves")
        waves.clear()
        waves.send_keys("50,100")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    retry_stale(start)
    wait(driver, EC.presence_of_element_located((By.ID, "rollout-waves")))
    check("wave 1 of 2" in driver.find_element(By.ID, "rollout-summary").text, "the rollout page shows its waves")
    driver.save_screenshot(os.path.join(SHOTS, "rollout.png"))
    # No reload: the page re-reads as the server pushes progress (its rows are replaced then, so they are read in the
    # page: an element found before a re-render would be stale).
    def read_states(d):
        return d.execute_script("return [...document.querySelectorAll('#rollout-devices .device-state')].map((cell) => cell.textContent)")
    try:
        wait(driver, lambda d: "healthy" in read_states(d), 100)
    except Exception:
        pass
    states = read_states(driver)
    check("healthy" in states, f"a device of the rollout became healthy, shown live ({states})")
    driver.save_screenshot(os.path.join(SHOTS, "rollout-progress.png"))


def admin_session():
    driver = browser()
    try:
        login(driver, os.environ["ECOWATT_ADMIN"])
        driver.get(URL + "/#/admin")
        chain = wait(driver, EC.presence_of_element_located((By.ID, "audit-chain")))
        check(chain.text.startswith("Chain intact"), f"the admin page shows the audit chain intact ({chain.text})")
        actions = [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr td:nth-child(4)")]
        check("queueCommand" in actions and "createDeployment" in actions, "the audit trail lists the commands and deployments")
        driver.save_screenshot(os.path.join(SHOTS, "admin.png"))
        driver.get(URL + "/#/system")
        wait(driver, EC.presence_of_element_located((By.ID, "system-mqtt")))
        server = driver.find_element(By.ID, "system-server").text
        check("version" in server and "uploads in the last minute" in server, f"the System page shows the release and the ingest rate")
        check("database, total" in driver.find_element(By.ID, "system-storage").text, "the System page shows the database size")
        driver.save_screenshot(os.path.join(SHOTS, "system.png"))
        check(not console_errors(driver), "no console errors (admin)")
    finally:
        driver.quit()


def focused(driver):
    """What has the keyboard focus: a link's URL, else a field's name, else the tag. Read in one script: the page
    re-renders live, and an element found first and read after could be gone (a stale reference failed a CI run)."""
    return driver.execute_script(
        "const a = document.activeElement; return a.href || a.getAttribute('name') || a.tagName.toLowerCase()")


def keyboard_login(driver, name):
    """Logs in with the keyboard only: Tab from the page to the fields, Enter to submit."""
    driver.get(URL + "/#/fleet")
    wait(driver, EC.presence_of_element_located((By.ID, "login-form")))
    ActionChains(driver).send_keys(Keys.TAB).perform()
    check(focused(driver) == "name", "Tab reaches the user name first")
    ActionChains(driver).send_keys(name, Keys.TAB, PASSWORD, Keys.ENTER).perform()
    wait(driver, EC.presence_of_element_located((By.ID, "devices")))
    reached = set()
    for _ in range(40):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        reached.add(focused(driver))
    check(any(h and h.endswith("#/security") for h in reached) and "status" in reached and any(h and "#/device/" in h for h in reached),
          f"the nav, the filters and the device links are reached with Tab ({len(reached)} stops)")


def phone_width(driver):
    """At 390 px the pages fit the width (tables scroll inside themselves)."""
    driver.set_window_size(390, 844)
    for page, marker in [("#/fleet", "devices"), (f"#/device/{PREFIX}001", "commands"), ("#/security", "security-events")]:
        driver.get(f"{URL}/{page}")
        wait(driver, EC.presence_of_element_located((By.ID, marker)))
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        check(width[0] <= width[1] + 1, f"{page} fits a phone's width ({width[0]} <= {width[1]})")
        driver.save_screenshot(os.path.join(SHOTS, "phone-" + page.split("/")[1] + ".png"))
    driver.set_window_size(1280, 800)


def viewer_session():
    driver = browser()
    try:
        keyboard_login(driver, os.environ["ECOWATT_VIEWER"])
        phone_width(driver)
        driver.get(f"{URL}/#/device/{PREFIX}001")
        wait(driver, EC.presence_of_element_located((By.ID, "commands")))
        check(not driver.find_elements(By.ID, "command-form"), "a viewer sees no command form")
        driver.get(URL + "/#/firmware")
        wait(driver, EC.presence_of_element_located((By.ID, "firmwares")))
        check(not driver.find_elements(By.ID, "upload-form") and not driver.find_elements(By.ID, "deploy-form"),
              "a viewer sees no upload or deploy form")
        check(driver.find_element(By.ID, "admin-link").get_attribute("hidden") is not None, "a viewer sees no admin link")
        errors = console_errors(driver)
        check(not errors, f"no console errors ({errors})")
        driver.save_screenshot(os.path.join(SHOTS, "device-viewer.png"))
        status = fetch(driver, "POST", f"/api/v1/devices/{PREFIX}001/commands", {"action": "get_power_stats"})
        check(status == 403, f"a viewer forcing a command gets 403 ({status})")
        # Logging out ends the session.
        driver.find_element(By.ID, "logout").click()
        wait(driver, EC.presence_of_element_located((By.ID, "login-form")))
        status = fetch(driver, "GET", "/api/v1/devices")
        check(status == 401, f"after logout the API answers 401 ({status})")
    finally:
        driver.quit()


if __name__ == "__main__":
    operator_session()
    viewer_session()
    admin_session()
    if failures:
        print(f"{len(failures)} browser check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all browser checks passed")
