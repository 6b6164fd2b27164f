#!/usr/bin/env python3
"""Drive a `saeplug dashboard` site in a real headless browser (Debian's chromium
through chromium-driver and selenium), from file://, with no flag that relaxes
file:// security. Run by tests/dashboard.rs.

    dashboard_browser.py SITE FEATURE SCREENSHOT

Prints one JSON object: the page's console messages, what the feature page shows
(its id, its first top example: the value shown, the highlighted tokens with their
values, the centre token's text and value), whether the never-fired notice is
there, and the ids the search box lists for the feature's id and for a word of
its explanation. The Rust test compares these with its own reference.
"""

import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    site, feature, shot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    # Headless, no sandbox (CI runs as root), shared memory off /dev/shm (small in
    # containers); nothing that touches file:// access rules.
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--window-size=1400,1100"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    out = {}
    try:
        d.get(f"file://{site}/index.html")
        wait = WebDriverWait(d, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#feature-list li"))
        out["list_count"] = d.find_element(By.ID, "count").text
        # Open the feature by clicking it after a search for its id.
        box = d.find_element(By.ID, "search")
        box.send_keys(str(feature))
        time.sleep(0.3)
        ids = [li.get_attribute("data-id") for li in d.find_elements(By.CSS_SELECTOR, "#feature-list li")]
        out["search_id"] = ids[:5]
        d.find_element(By.CSS_SELECTOR, f'#feature-list li[data-id="{feature}"]').click()
        wait.until(lambda d: d.find_element(By.ID, "feature").get_attribute("data-id") == str(feature)
                   and d.find_elements(By.CSS_SELECTOR, "#feature h2"))
        page = d.find_element(By.ID, "feature")
        out["page_id"] = int(page.get_attribute("data-id"))
        out["never_fired_notice"] = bool(d.find_elements(By.CSS_SELECTOR, "#feature p.never"))
        ex = d.find_elements(By.CSS_SELECTOR, "#feature .top-examples .example")
        out["top_examples"] = len(ex)
        if ex:
            first = ex[0]
            out["first_value"] = float(first.get_attribute("data-act"))
            out["first_seq"] = int(first.get_attribute("data-seq"))
            out["first_pos"] = int(first.get_attribute("data-pos"))
            c = first.find_element(By.CSS_SELECTOR, ".tok.center")
            out["center_text"] = c.get_attribute("textContent")
            out["center_value"] = float(c.get_attribute("data-act"))
            out["center_highlighted"] = "active" in c.get_attribute("class").split()
            out["center_title"] = c.get_attribute("title")
            out["highlighted"] = [
                [t.get_attribute("textContent"), float(t.get_attribute("data-act"))]
                for t in first.find_elements(By.CSS_SELECTOR, ".tok.active")
            ]
        expl = d.find_elements(By.CSS_SELECTOR, "#feature .explanation")
        out["explanation"] = expl[0].text if expl else None
        logits = d.find_elements(By.CSS_SELECTOR, "#feature table.logits.pos td.pos")
        out["top_logit_tokens"] = [json.loads(t.text) for t in logits]
        d.save_screenshot(shot)
        if out["explanation"]:
            word = max(out["explanation"].split(), key=len)
            box.clear()
            box.send_keys(word)
            time.sleep(0.3)
            out["search_word"] = word
            out["search_word_ids"] = [li.get_attribute("data-id")
                                      for li in d.find_elements(By.CSS_SELECTOR, "#feature-list li")]
        out["console"] = d.get_log("browser")
    finally:
        d.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
