#!/usr/bin/env python3
"""The dashboard in headless Chromium, against a live `surveyd serve` (scripts/dashboard-test).

Environment: SURVEYD_URL, SURVEYD_ADMIN_TOKEN (the company's admin token),
SURVEYD_OTHER_TOKEN (another company's), DATABASE_URL (to seed requests as the
superuser), SCREENSHOTS (a folder), SERVE_LOG (the server's log, searched for the token).
"""
import json
import os
import re
import subprocess
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["SURVEYD_URL"]
ADMIN = os.environ["SURVEYD_ADMIN_TOKEN"]
OTHER = os.environ["SURVEYD_OTHER_TOKEN"]
DATABASE_URL = os.environ["DATABASE_URL"]
SCREENSHOTS = os.environ["SCREENSHOTS"]
SERVE_LOG = os.environ.get("SERVE_LOG")
API = "/survey/1.0.0"

passed, failed = 0, 0


def check(condition, message):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {message}", file=sys.stderr)


def api(method, path, token, body=None):
    request = urllib.request.Request(BASE + path, method=method, headers={"Authorization": f"Bearer {token}"})
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode() or "null")


def psql(sql):
    return subprocess.run(["psql", "-X", DATABASE_URL, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def seed():
    """Two surveys with answers spread over the last 400 days (as the superuser, so the
    dates can be anything); the triggers keep the rollups as sends and replies would."""
    surveys = []
    for name, languages in [("Store visit", ["en", "fr"]), ("Delivery", ["nl"])]:
        status, survey = api("POST", f"{API}/surveys", ADMIN, {
            "name": name, "interactionType": "retail",
            "questions": [{"body": f"How likely are you to recommend us? ({lang})", "language": lang} for lang in languages]})
        assert status == 201, survey
        surveys.append(survey)
    for index, survey in enumerate(surveys):
        question = survey["questions"][0]["id"]
        psql(f"""
            INSERT INTO survey_requests (company_id, survey_id, question_id, channel, destination_hash, reference_id,
                                         language, segments, created_at, status, score, bad_replies, sent_at, sms_segments)
            SELECT s.company_id, s.survey_id, {question}, 'SMS', sha256(('d{index}-' || i)::bytea), 'order-' || i,
                   (ARRAY['en', 'fr', 'nl'])[1 + i % 3],
                   CASE i % 3 WHEN 0 THEN ARRAY['vip'] WHEN 1 THEN ARRAY['north', 'vip'] ELSE ARRAY['south'] END,
                   now() - make_interval(hours => i * 7),
                   CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'delivered' END,
                   CASE WHEN i % 17 = 0 OR i % 11 = 0 THEN NULL ELSE (i * 7 + {index}) % 11 END,
                   CASE WHEN i % 11 = 0 THEN 1 ELSE 0 END,
                   now() - make_interval(hours => i * 7), 1
              FROM surveys AS s, generate_series(1, 1400) AS i
             WHERE s.survey_id = {survey['id']}""")
    return surveys


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    surveys = seed()
    status, created = api("POST", f"{API}/tokens", ADMIN, {"scope": "read"})
    assert status == 201, created
    read_token, read_token_id = created["token"], created["id"]

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        run(driver, surveys, read_token, read_token_id)
    except Exception:
        traceback.print_exc()
        check(False, "the browser flow raised")
    finally:
        driver.quit()
    if SERVE_LOG and os.path.exists(SERVE_LOG):
        log = open(SERVE_LOG).read()
        check(read_token not in log and ADMIN not in log, "no token in the server's log")
    print(f"screenshots: {SCREENSHOTS}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def browser_problems(driver):
    """Console errors and failed or refused requests since the last call."""
    problems = [f"console: {entry['message']}" for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.loadingFailed":
            problems.append(f"failed request: {message['params'].get('errorText')}")
        elif message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if response["status"] >= 400 and message["params"].get("type") != "Document":
                problems.append(f"asset {response['url']} answered {response['status']}")
    return problems


def figures(driver):
    def value(name):
        elements = driver.find_elements(By.CSS_SELECTOR, f'[data-metric="{name}"]')
        if not elements:
            return None
        element = elements[0]
        return element.get_attribute("data-value") if element.get_attribute("data-value") is not None else element.text
    return {name: value(name) for name in ["nps", "responses", "requests", "responseRate", "promoters", "passives", "detractors"]}


def tenths(number):
    """A decimal as the page writes it (`Tenths`): 95, -40, 33.3."""
    if number is None:
        return ""
    value = round(number * 10)
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10)
    return f"{sign}{whole}" if fraction == 0 else f"{sign}{whole}.{fraction}"


def click_and_wait(driver, element):
    """Clicks what loads a new page, and waits until it has.

    The old page is marked with a property of its window, which a new document does not have. Waiting for the
    old `<html>` element to go stale instead races the navigation: Chromium may answer a question about a node
    of a document being torn down with a generic inspector error rather than a stale-element one."""
    driver.execute_script("window.__dashboardTestOldPage = true")
    element.click()

    def new_page_loaded(driver):
        return driver.execute_script(
            "return window.__dashboardTestOldPage === undefined && document.readyState === 'complete'")

    WebDriverWait(driver, 10, ignored_exceptions=(WebDriverException,)).until(new_page_loaded)


def compare_with_api(driver, token, context):
    """Every headline figure on the page equals the API's report for the page's parameters."""
    path = driver.find_element(By.CSS_SELECTOR, '[data-api="report"]').get_attribute("textContent").removeprefix("GET ").strip()
    status, report = api("GET", path, token)
    check(status == 200, f"{context}: the API answers the page's query {path}: {status}")
    if status != 200:
        return
    page = figures(driver)
    nps, statistics = report["nps"], report["responseStatistics"]
    expected = {
        "nps": tenths(nps["score"]), "responses": str(statistics["totalResponses"]), "requests": str(statistics["totalRequests"]),
        "responseRate": tenths(statistics["responseRate"]), "promoters": str(nps["promoters"]),
        "passives": str(nps["passives"]), "detractors": str(nps["detractors"]),
    }
    for name, wanted in expected.items():
        check(page[name] == wanted, f"{context}: {name} on the page {page[name]!r}, the API {wanted!r}")
    # The trend's table against the API's buckets.
    trend_path = driver.find_element(By.CSS_SELECTOR, '[data-api="trend"]').get_attribute("textContent").removeprefix("GET ").strip()
    status, trend = api("GET", trend_path, token)
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-bucket]")
    check(status == 200 and len(rows) == len(trend["buckets"]), f"{context}: one trend row per API bucket")
    for row, bucket in zip(rows, trend["buckets"]):
        responses = row.find_element(By.CSS_SELECTOR, '[data-metric="responses"]').get_attribute("textContent")
        check(responses == str(bucket["responseStatistics"]["totalResponses"]), f"{context}: a trend bucket's responses")
    return report


def screenshot(driver, name):
    for width in [1280, 360]:
        for scheme in ["light", "dark"]:
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            driver.set_window_size(width, 900)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, min(max(height, 600), 6000))
            driver.save_screenshot(os.path.join(SCREENSHOTS, f"{name}-{width}-{scheme}.png"))
            if width == 360:
                overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
                check(overflow <= 1, f"{name}: nothing wider than a 360 px phone ({scheme}): {overflow} px too wide")
            check_contrast(driver, f"{name} {width} {scheme}")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    driver.set_window_size(1280, 900)


CONTRAST = """
function luminance(color) {
  const [r, g, b] = color.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(element) {
  for (let e = element; e; e = e.parentElement) {
    const color = getComputedStyle(e).backgroundColor;
    if (!/rgba\\(.*, 0\\)$/.test(color) && color !== 'transparent') return color;
  }
  return 'rgb(255, 255, 255)';
}
const worst = [];
for (const element of document.querySelectorAll('h1, h2, p, a, button, label, th, td, dt, dd, summary, li, option')) {
  if (!element.offsetParent && element.tagName !== 'OPTION') continue;
  if (!Array.from(element.childNodes).some(n => n.nodeType === 3 && n.textContent.trim())) continue;
  const fg = luminance(getComputedStyle(element).color), bg = luminance(background(element));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  if (ratio < 4.5) worst.push(element.tagName + ' "' + element.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
}
return worst;
"""


def check_contrast(driver, context):
    low = driver.execute_script(CONTRAST)
    check(not low, f"{context}: text below WCAG AA contrast (4.5:1): {low[:5]}")


def keyboard_reaches_everything(driver, context):
    """Tab from the top: every link, button, field and disclosure gets focus, visibly."""
    focusable = """return Array.from(document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, summary, [tabindex="0"]')).filter(e => e.offsetParent !== null)"""
    wanted = len(driver.execute_script(focusable))
    driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    seen, invisible = set(), []
    for _ in range(wanted + 5):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        index, outline = driver.execute_script(focusable.replace("return ", "const all = ") + """;
            const e = document.activeElement, s = getComputedStyle(e);
            return [all.indexOf(e), s.outlineStyle + ' ' + s.outlineWidth];""")
        if index < 0:
            continue
        if outline.startswith("none") or outline.endswith(" 0px"):
            invisible.append(index)
        seen.add(index)
    check(len(seen) == wanted, f"{context}: Tab reached {len(seen)} of {wanted} controls")
    check(not invisible, f"{context}: focus is visible on every control (not on {invisible[:5]})")


def run(driver, surveys, read_token, read_token_id):
    driver.get(BASE + "/dashboard")
    check(driver.find_element(By.ID, "token").get_attribute("type") == "password", "sign-in asks for the token")
    check(driver.execute_script("return document.cookie") == "", "no cookie readable by scripts")
    screenshot(driver, "sign-in")
    keyboard_reaches_everything(driver, "sign-in")

    # A wrong token: refused, nothing revealed.
    driver.find_element(By.ID, "token").send_keys("nps_live_" + "x" * 43)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    check("not valid" in driver.find_element(By.ID, "sign-in-error").text, "a wrong token is refused")
    browser_problems(driver)  # the 401 document itself is expected

    # Signing in with the read token.
    driver.find_element(By.ID, "token").send_keys(read_token)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    check(driver.find_element(By.TAG_NAME, "h1").text == "Overview", "signed in: the overview")
    check(read_token not in driver.page_source, "the token is not in the page")
    check(read_token not in driver.current_url, "nor in the URL")
    storage = driver.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    check(read_token not in storage, "nor in browser storage")
    compare_with_api(driver, read_token, "overview, 30 days")
    check(not browser_problems(driver), f"overview: no console error or failed asset")
    screenshot(driver, "overview")
    keyboard_reaches_everything(driver, "overview")

    # Another period, by the form: the URL changes, the figures follow.
    Select(driver.find_element(By.ID, "period")).select_by_value("365")
    Select(driver.find_element(By.ID, "interval")).select_by_value("month")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    check("period=365" in driver.current_url and "interval=month" in driver.current_url, f"the period is in the URL: {driver.current_url}")
    report = compare_with_api(driver, read_token, "overview, 365 days by month")
    check(report is not None and report["responseStatistics"]["totalResponses"] > 0, "a year has answers")
    check(len(driver.find_elements(By.CSS_SELECTOR, "tr[data-bucket]")) >= 12, "a year by month has twelve buckets or more")

    # A custom range, and segments.
    Select(driver.find_element(By.ID, "period")).select_by_value("custom")
    for field, value in [("from", "2026-01-05"), ("to", "2026-03-31")]:
        element = driver.find_element(By.ID, field)
        driver.execute_script("arguments[0].value = arguments[1]", element, value)
    segments = driver.find_element(By.ID, "segments")
    segments.clear()
    segments.send_keys("vip, north")
    Select(driver.find_element(By.ID, "segmentMode")).select_by_value("ANY")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    check("period=custom" in driver.current_url and "segmentMode=ANY" in driver.current_url, "custom range and segments in the URL")
    compare_with_api(driver, read_token, "overview, custom range, segments ANY")

    # The same view, bookmarked, opens the same way.
    bookmarked = driver.current_url
    driver.get(bookmarked)
    compare_with_api(driver, read_token, "overview, reopened from its URL")

    # A survey's page, from the table.
    driver.get(BASE + "/dashboard?period=90")
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, surveys[0]["name"]))
    check(driver.find_element(By.TAG_NAME, "h1").text == surveys[0]["name"], "the survey's page")
    check("period=90" in driver.current_url, "the survey page keeps the period")
    languages = [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".questions-list dt")]
    check(languages == ["en", "fr"], f"its questions by language: {languages}")
    compare_with_api(driver, read_token, "survey page, 90 days")
    status, by_segment = api("GET", driver.find_element(By.CSS_SELECTOR, '[data-api="report"]').get_attribute("textContent")
                             .removeprefix("GET ").strip() + "&groupBy=segment", read_token)
    page_segments = [row.find_element(By.TAG_NAME, "th").text for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-group]")][:3]
    api_segments = [group["segment"] or "(no segment)" for group in by_segment["groups"]]
    check(page_segments == api_segments[:3], f"the breakdown by segment is the API's: {page_segments} / {api_segments}")
    check(not browser_problems(driver), "survey page: no console error or failed asset")
    screenshot(driver, "survey")
    keyboard_reaches_everything(driver, "survey")

    # Requests, filtered, and the CSV.
    driver.get(BASE + "/dashboard/requests")
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-request]")
    check(len(rows) == 50, f"the latest 50 requests: {len(rows)}")
    Select(driver.find_element(By.ID, "status")).select_by_value("failed")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    statuses = {row.find_element(By.CSS_SELECTOR, ".status").text for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-request]")}
    check(statuses == {"failed"}, f"filtered by status: {statuses}")
    csv_link = driver.find_element(By.LINK_TEXT, "Download CSV").get_attribute("href")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(csv_link, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
        check(response.headers["Content-Type"].startswith("text/csv"), "the CSV is CSV")
    check(text.splitlines()[0].startswith("id,") and all(",failed," in line for line in text.splitlines()[1:]),
          "the CSV has the filtered requests")
    check(not re.search(r"\+\d{8,}", text), "no phone number in the CSV")
    check(not browser_problems(driver), "requests page: no console error or failed asset")
    screenshot(driver, "requests")
    keyboard_reaches_everything(driver, "requests")

    # Usage.
    driver.get(BASE + "/dashboard/usage")
    path = driver.find_element(By.CSS_SELECTOR, '[data-api="usage"]').get_attribute("textContent").removeprefix("GET ").strip()
    status, usage = api("GET", path, read_token)
    page = {name: driver.find_element(By.CSS_SELECTOR, f'[data-metric="{name}"]') for name in ["messages", "segments", "dailySmsCap"]}
    check(page["messages"].get_attribute("data-value") == str(usage["messages"]), "usage: messages as the API says")
    check(page["segments"].get_attribute("data-value") == str(usage["segments"]), "usage: segments as the API says")
    check(page["dailySmsCap"].text == str(usage["dailySmsCap"]), "usage: the daily cap as the API says")
    check(not browser_problems(driver), "usage page: no console error or failed asset")
    screenshot(driver, "usage")

    # Another company's survey is not there.
    status, theirs = api("POST", f"{API}/surveys", OTHER, {"name": "Their survey", "interactionType": "x",
                                                            "questions": [{"body": "Q?", "language": "en"}]})
    driver.get(BASE + f"/dashboard/surveys/{theirs['id']}")
    check("Their survey" not in driver.page_source and driver.find_element(By.TAG_NAME, "h1").text == "Not Found",
          "another company's survey is not found")
    browser_problems(driver)

    # Signing out ends the session; its pages go back to the sign-in form.
    driver.get(BASE + "/dashboard")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, ".sign-out button"))
    check(driver.find_elements(By.ID, "token"), "signed out: the sign-in form")
    driver.get(BASE + "/dashboard/usage")
    check(driver.find_elements(By.ID, "token"), "after sign-out a page asks to sign in again")

    # Revoking the token ends its session at once.
    driver.find_element(By.ID, "token").send_keys(read_token)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    check(driver.find_element(By.TAG_NAME, "h1").text == "Overview", "signed in again")
    status, _ = api("DELETE", f"{API}/tokens/{read_token_id}", ADMIN)
    check(status == 204, f"the token is revoked: {status}")
    driver.get(BASE + "/dashboard/usage")
    check(driver.find_elements(By.ID, "token"), "a revoked token's session is refused")
    browser_problems(driver)


if __name__ == "__main__":
    main()
