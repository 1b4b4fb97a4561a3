"""Dashboard timings in headless Chromium (issue 20's benchmark; scripts/bench-dashboard.sh runs it): the fleet page's
first render and a device's one-week chart, each the median of several loads, from the page's own performance marks
(`fleet-rendered`, `chart-rendered`, set by app.js and device-chart.js when the content is on screen)."""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402

import browser_harness as harness  # noqa: E402  (browser(), login(), wait())

RUNS = int(os.environ.get("ECOWATT_BENCH_RUNS", "5"))
URL = harness.URL
DEVICE = os.environ["ECOWATT_BENCH_DEVICE"]

driver = harness.browser()
try:
    harness.login(driver, os.environ["ECOWATT_OPERATOR"])
    fleet, chart = [], []
    for _ in range(RUNS):
        driver.get("about:blank")
        driver.get(URL + "/#/fleet")
        harness.wait(driver, EC.presence_of_element_located((By.ID, "devices")), 60)
        fleet.append(driver.execute_script("return performance.getEntriesByName('fleet-rendered')[0].startTime"))
    count = driver.find_element(By.ID, "count-devices").text
    for _ in range(RUNS):
        driver.get("about:blank")
        driver.get(f"{URL}/#/device/{DEVICE}")
        harness.wait(driver, EC.presence_of_element_located((By.ID, "chart-section")), 60)
        harness.wait(driver, lambda d: d.execute_script("return performance.getEntriesByName('chart-rendered').length") > 0, 60)
        driver.execute_script("performance.clearMarks('chart-rendered'); window.__start = performance.now()")
        driver.find_element(By.XPATH, "//button[text()='7 d']").click()
        harness.wait(driver, lambda d: d.execute_script("return performance.getEntriesByName('chart-rendered').length") > 0, 60)
        chart.append(driver.execute_script("return performance.getEntriesByName('chart-rendered')[0].startTime - window.__start"))
    status = driver.find_element(By.ID, "chart-status").text
    print(f"fleet page first render (navigation to table, {count} devices): median {statistics.median(fleet):.0f} ms, "
          f"max {max(fleet):.0f} ms over {RUNS} loads")
    print(f"device chart, one week ({status}): median {statistics.median(chart):.0f} ms, max {max(chart):.0f} ms over {RUNS}")
finally:
    driver.quit()
