"""The real Airflow UI of the stack, in headless Chromium: the trigger form, as a person uses it.

Manual runs from the UI are a main use. The browser logs in, opens the pipeline DAG and its
Trigger form, checks that every Param shows its title and help in its section, sees the form
refuse bad values, then triggers a tiny run and watches it succeed. Screenshots of each step go
to $RLOPS_TEST_ARTIFACTS (default: test-artifacts/ in the repository).

Chromium and chromedriver are Debian's (scripts/system-deps.sh installs them); giving Selenium
the driver's path means selenium-manager never runs, so nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from devstack import Stack
from tests.browser import chromium, save_screenshot
from tests.integration.conftest import DAG_ID, DAG_PATH, TINY_CONF, AirflowApi

pytestmark = pytest.mark.integration

UI_WAIT = 30.0  # seconds for the React UI to render something
FIELD = "[data-scope=field][data-part=root]"  # label + input + help + error of one Param
# Typed into the form field by field: the form names its fields after the Params.
TINY = {**TINY_CONF, "registered_model_name": "rlops-ui"}


@pytest.fixture(scope="module")
def browser(
    stack: Stack, pipeline_api: AirflowApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebDriver]:
    """Chromium with a fresh profile, logged in to the stack's Airflow as its admin."""
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        driver.get(stack.airflow_url)  # SimpleAuthManager's login page
        wait = WebDriverWait(driver, UI_WAIT)
        wait.until(ec.element_to_be_clickable((By.NAME, "username"))).send_keys(
            stack.airflow_username
        )
        driver.find_element(By.NAME, "password").send_keys(stack.airflow_password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/login" not in d.current_url)
        yield driver


class TriggerForm:
    """The Trigger dialog of the DAG page: sections are accordion items, one open at a time."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.wait = WebDriverWait(
            driver, UI_WAIT, ignored_exceptions=[StaleElementReferenceException]
        )
        driver.get(f"{base_url}/dags/{DAG_ID}")
        trigger = (By.CSS_SELECTOR, "button[aria-label='Trigger Dag']")
        self.wait.until(ec.element_to_be_clickable(trigger)).click()
        self.form = self.wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=config-form]"))
        )
        self.dialog = self.form.find_element(By.XPATH, "ancestor::*[@role='dialog']")
        self._last_refusal = ""

    def sections(self) -> list[str]:
        return [b.text for b in self._section_buttons()]

    def open(self, section: str) -> WebElement:
        """Expand a section; its content region."""
        (button,) = [b for b in self._section_buttons() if b.text == section]
        if button.get_attribute("aria-expanded") != "true":
            self.wait.until(lambda _: self._clicked(button))
        region = self.driver.find_element(By.ID, button.get_attribute("aria-controls"))
        return self.wait.until(ec.visibility_of(region))

    def _clicked(self, element: WebElement) -> bool:
        """Click `element` once nothing lies over it (a section above still unfolding moves
        its fields across it for a moment, as a person waits out); whether it was clicked."""
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        try:
            element.click()
        except ElementClickInterceptedException:
            return False
        return True

    def fields(self, section: str) -> list[tuple[str, str]]:
        """(label, help text) of every field in a section, top to bottom."""
        roots = self.open(section).find_elements(By.CSS_SELECTOR, FIELD)
        return [
            (
                root.find_element(By.CSS_SELECTOR, "label").text.rstrip(" \n*"),
                root.find_element(By.CSS_SELECTOR, "[data-part=helper-text]").text,
            )
            for root in roots
        ]

    def type(self, param: str, text: str) -> WebElement:
        """Replace what a text or number field holds and leave it, as a person tabbing on."""
        box = self.driver.find_element(By.NAME, f"element_{param}")
        box.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.BACK_SPACE, text, Keys.TAB)
        return box

    def type_json(self, param: str, value: object) -> None:
        """Replace the content of a JSON (code editor) field.

        The editor closes brackets and quotes as they are typed; whatever it added after the
        cursor is selected and deleted.
        """
        self.driver.find_element(By.CSS_SELECTOR, f"#element_{param} .view-lines").click()
        (
            ActionChains(self.driver)
            .key_down(Keys.CONTROL)
            .send_keys("a")
            .key_up(Keys.CONTROL)
            .send_keys(json.dumps(value))
            .key_down(Keys.SHIFT)
            .key_down(Keys.CONTROL)
            .send_keys(Keys.END)
            .key_up(Keys.CONTROL)
            .key_up(Keys.SHIFT)
            .send_keys(Keys.DELETE)
            .perform()
        )

    def error_of(self, param: str) -> str:
        """The validation message the form shows under a field."""
        field = self.driver.find_element(By.NAME, f"element_{param}").find_element(
            By.XPATH, "ancestor::*[@data-scope='field' and @data-part='root']"
        )
        return field.find_element(By.CSS_SELECTOR, "[data-part=error-text]").text

    def submit_button(self) -> WebElement:
        return self.dialog.find_element(By.XPATH, ".//button[normalize-space()='Trigger']")

    def submit(self) -> None:
        """Click Trigger once it is enabled: the form re-validates a field when it is left, and
        a click on the button while that disables it is silently lost. After a refusal, the
        UI's toast region can lie over the button for a while (Selenium: click intercepted); a
        person clicks through it, so does this."""
        button = self.wait.until(ec.element_to_be_clickable(self.submit_button()))
        try:
            button.click()
        except ElementClickInterceptedException:
            self.driver.execute_script("arguments[0].click()", button)

    def refusal(self) -> str:
        """The error the dialog shows when the API refuses the run.

        The alert of an earlier refusal stays up until the new answer replaces it, so this
        waits for a text other than the last one it returned.
        """
        alert = (By.CSS_SELECTOR, "[data-testid=error-alert]")

        def new_text(driver: WebDriver) -> str | None:
            shown = [e.text for e in driver.find_elements(*alert) if e.is_displayed()]
            return next((text for text in shown if text and text != self._last_refusal), None)

        self._last_refusal = self.wait.until(new_text)
        return self._last_refusal

    def screenshot(self, name: str, element: WebElement, block: str = "center") -> None:
        """Save what the viewport shows with element scrolled to its `block` position."""
        self.driver.execute_script(f"arguments[0].scrollIntoView({{block: '{block}'}})", element)
        save_screenshot(self.driver, name)

    def _section_buttons(self) -> list[WebElement]:
        return self.form.find_elements(By.CSS_SELECTOR, "button[data-part=item-trigger]")


def test_form_shows_every_param_by_title_in_its_section(
    browser: WebDriver, stack: Stack, pipeline_api: AirflowApi
) -> None:
    params: dict[str, Any] = pipeline_api.get(f"{DAG_PATH}/details")["params"]
    expected: dict[str, list[tuple[str, str]]] = {}
    for param in params.values():
        expected.setdefault(param["schema"]["section"], []).append(
            (param["schema"]["title"], param["description"])
        )
    assert list(expected) == ["Training", "Evaluation", "Promotion", "Advanced"]

    form = TriggerForm(browser, stack.airflow_url)

    assert form.sections() == [*expected, "Advanced Options"]  # the last one is Airflow's own
    for section, fields in expected.items():
        assert form.fields(section) == fields, section
    form.open("Training")
    form.screenshot("trigger-form.png", form.dialog, "start")


def test_form_refuses_invalid_values(
    browser: WebDriver, stack: Stack, pipeline_api: AirflowApi
) -> None:
    runs_before = pipeline_api.get(f"{DAG_PATH}/dagRuns")["total_entries"]
    form = TriggerForm(browser, stack.airflow_url)
    form.open("Training")

    # Below the minimum: the number field snaps back to it when left, so 10 is never sent.
    assert form.type("total_timesteps", "10").get_attribute("value") == "1000"

    # Emptied: the field says it is required and the Trigger button is disabled.
    box = form.type("total_timesteps", "")
    assert form.error_of("total_timesteps") == "This field is required"
    assert not form.submit_button().is_enabled()
    form.screenshot("trigger-form-required.png", box)
    form.type("total_timesteps", "1000")
    assert form.submit_button().is_enabled()

    # What the form cannot check itself (a pattern) the API refuses, and the dialog says why.
    form.open("Promotion")
    form.type("registered_model_name", "bad name!")
    form.submit()
    assert "400 Bad Request" in (refusal := form.refusal())
    assert "Invalid input for param registered_model_name: 'bad name!' does not match" in refusal
    form.screenshot("trigger-form-refused.png", form.dialog, "start")

    # A typo inside the SAC overrides is refused by name too, before any run exists.
    form.type("registered_model_name", "rlops-ui")
    form.open("Advanced")
    form.type_json("sac_overrides", {"hiden_sizes": [8]})
    form.submit()
    refusal = form.refusal()
    assert "Invalid input for param sac_overrides" in refusal
    assert "'hiden_sizes' was unexpected" in refusal
    form.screenshot("trigger-form-refused-overrides.png", form.dialog, "start")
    assert pipeline_api.get(f"{DAG_PATH}/dagRuns")["total_entries"] == runs_before


def test_form_triggers_a_run_that_succeeds(
    browser: WebDriver, stack: Stack, pipeline_api: AirflowApi
) -> None:
    params: dict[str, Any] = pipeline_api.get(f"{DAG_PATH}/details")["params"]
    form = TriggerForm(browser, stack.airflow_url)
    for name, value in TINY.items():
        form.open(params[name]["schema"]["section"])
        if isinstance(value, dict):
            form.type_json(name, value)
        else:
            form.type(name, str(value))
    form.screenshot("trigger-form-filled.png", form.submit_button())
    form.submit()

    # The UI opens the new run's page at once.
    try:
        WebDriverWait(browser, UI_WAIT).until(ec.url_contains(f"/dags/{DAG_ID}/runs/"))
    except TimeoutException:
        save_screenshot(browser, "trigger-no-run-page.png")
        runs = pipeline_api.get(f"{DAG_PATH}/dagRuns")["dag_runs"]
        typed = [
            r["dag_run_id"] for r in runs if r["conf"].get("registered_model_name") == "rlops-ui"
        ]
        pytest.fail(
            f"no run page {UI_WAIT:.0f} s after Trigger (still at {browser.current_url}); runs "
            f"with the typed conf: {typed or 'none'}; see trigger-no-run-page.png"
        )
    run_page = browser.current_url
    run_id = unquote(urlparse(run_page).path.split("/runs/", 1)[1])
    header_state = (
        By.XPATH,
        f"//h2[normalize-space()='{run_id}']/following-sibling::*[@data-testid='state-badge']",
    )
    assert WebDriverWait(browser, UI_WAIT).until(ec.visibility_of_element_located(header_state))

    # A page that refreshes itself every few seconds costs a core the run needs: wait on a
    # blank page through the REST API, then look at the run page again.
    browser.get("about:blank")
    run = pipeline_api.wait_for_run(run_id)
    browser.get(run_page)
    rendered = WebDriverWait(browser, UI_WAIT, ignored_exceptions=[StaleElementReferenceException])
    shown = rendered.until(
        lambda d: (text := d.find_element(*header_state).text) in ("Success", "Failed") and text
    )
    save_screenshot(browser, "run-page.png")
    assert (shown, run["state"]) == ("Success", "success"), pipeline_api.tasks(run_id)
    assert {name: run["conf"][name] for name in TINY} == TINY  # what was typed is what ran
