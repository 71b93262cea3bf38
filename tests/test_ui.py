"""The Prefect UI in a real headless Chromium: the demo swap's run, its tasks and its before/after artifact; and
each swap flow's deployment form (Run -> Custom run), every parameter shown with its description.

Skipped when Chromium or Playwright's Python package is missing (under ``CI=true`` it fails instead); ``make test-ui``
installs Chromium from Debian's packages (Playwright, a dev dependency, drives the system browser; it downloads
none). Screenshots go to the test's temporary folder, or to ``$FACESWAP_UI_SCREENSHOTS`` when set
(``FACESWAP_UI_SCREENSHOTS=docs make test-ui`` refreshes the README's pictures).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.utilities.callables import parameter_schema

from faceswap_flows.flows import batch_faceswap, faceswap, multi_faceswap, multi_video_faceswap, video_faceswap
from tests.optional import unavailable
from tests.support import recorded_task_runs
from tests.ui_form import OPTIONAL, SHOWN_FIELDS_JS, described_groups, group_titles, missing, shown_fields

pytestmark = pytest.mark.ui

CHROMIUM = Path(os.environ.get("FACESWAP_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    unavailable(f"no Chromium at {CHROMIUM} (make test-ui installs it)")
try:
    import playwright.async_api as playwright
except ModuleNotFoundError:
    unavailable("no Playwright (pip install -e '.[dev]' installs it)")

# Headless and quiet: the machine's network is closed, so nothing may phone home at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOWN_WITHIN_MS = 30_000
# The screenshots in docs/ are taken at this size: 1280 px wide, tall enough for the whole before/after artifact.
VIEWPORT = {"width": 1280, "height": 1500}
TASK_PREFIXES = ("upload", "submit", "wait for callback", "fetch result", "record provenance")
PICTURE_LOADED = """alt => {
    const picture = document.querySelector(`img.markdown-renderer__image[alt="${alt}"]`);
    return picture !== null && picture.complete && picture.naturalWidth > 0;
}"""

# The ancestor (one that scrolls or hides its overflow) cutting off the picture's right edge, or null.
PICTURE_CUT_OFF = """alt => {
    const picture = document.querySelector(`img.markdown-renderer__image[alt="${alt}"]`);
    const right = picture.getBoundingClientRect().right;
    for (let box = picture.parentElement; box; box = box.parentElement) {
        const clips = getComputedStyle(box).overflowX !== "visible";
        if ((clips || box === document.body) && right > box.getBoundingClientRect().right + 1) return box.className;
    }
    return right > window.innerWidth + 1 ? "the window" : null;
}"""

# Prefect's own UI (not our pages: our artifacts are plain markdown and tables) sometimes throws this while its run
# graph is laid out as the test switches tabs; seen once in three full runs on a loaded machine (2026-12-07), never
# when the file runs alone. Any other page error fails the test.
PREFECT_UI_RACES = {"Cannot read properties of null (reading 'position')"}


def screenshot_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FACESWAP_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def task_run_names(flow_run_id: str) -> list[str]:
    return [run.name for run in await recorded_task_runs(flow_run_id, named=TASK_PREFIXES)]


async def test_prefect_ui_shows_the_run_its_tasks_and_the_before_after(stack, prefect_server, tmp_path: Path) -> None:
    expect = playwright.expect
    state = await faceswap(str(stack.files["astronaut"]), str(stack.files["grace"]), return_state=True)
    assert state.is_completed(), state.message
    outcome = await state.result()
    flow_run_id = str(state.state_details.flow_run_id)
    async with get_client() as client:
        run_name = (await client.read_flow_run(flow_run_id)).name
    task_names = await task_run_names(flow_run_id)
    for prefix in TASK_PREFIXES:
        assert any(name.startswith(prefix) for name in task_names), f"no task run named {prefix}...: {task_names}"
    shots = screenshot_folder(tmp_path)
    page_errors: list[str] = []

    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda error: page_errors.append(str(error)))

            # The flow run: its name, its state and its flow in the heading.
            await page.goto(f"{prefect_server.ui_url}/runs/flow-run/{flow_run_id}")
            heading = page.locator("header.page-heading-flow-run")
            await expect(heading.locator(".p-bread-crumbs")).to_contain_text(run_name, timeout=SHOWN_WITHIN_MS)
            await expect(heading.locator(".state-badge")).to_have_text("Completed")
            await expect(heading.get_by_role("link", name="faceswap", exact=True)).to_be_visible()

            # Its tasks: every task run of the API is listed by name, all completed.
            await page.locator("li.p-tab#task-runs").click()
            task_runs = page.get_by_role("tabpanel", name="Task Runs")
            for name in task_names:
                link = task_runs.get_by_role("link", name=name, exact=True)
                await expect(link).to_be_visible(timeout=SHOWN_WITHIN_MS)
            everything_completed = re.compile(rf"{len(task_names)} Task runs\s*\({len(task_names)} completed\)", re.I)
            await expect(task_runs).to_contain_text(everything_completed)
            await page.wait_for_timeout(1_000)  # the timeline is a canvas: let it settle before the picture
            await page.screenshot(path=str(shots / "ui-flow-run.png"))

            # Its artifacts: the before/after card, then the artifact itself with both pictures loaded.
            await page.locator("li.p-tab#artifacts").click()
            card = page.locator("a", has=page.locator(".artifact-card__title", has_text="result-faceswap"))
            await expect(card).to_be_visible(timeout=SHOWN_WITHIN_MS)
            await card.click()
            await expect(page.get_by_text("faceswap: before / after")).to_be_visible(timeout=SHOWN_WITHIN_MS)
            await expect(page.get_by_text(outcome.task_id).first).to_be_visible()
            for alt in ("before", "after"):
                picture = page.locator(f"img.markdown-renderer__image[alt='{alt}']")
                await expect(picture).to_be_visible()
                await page.wait_for_function(PICTURE_LOADED, arg=alt, timeout=SHOWN_WITHIN_MS)
                assert await page.evaluate(PICTURE_CUT_OFF, alt) is None, f"{alt} is cut off at {VIEWPORT['width']} px"
            await page.screenshot(path=str(shots / "ui-artifact.jpg"), type="jpeg", quality=80)
        finally:
            await browser.close()
    assert not [e for e in page_errors if e not in PREFECT_UI_RACES], f"the UI raised errors: {page_errors}"


FORM_FLOWS = [faceswap, multi_faceswap, video_faceswap, multi_video_faceswap, batch_faceswap, described_groups]


async def open_custom_run(page: playwright.Page, ui_url: str, deployment_id: UUID) -> None:
    """The deployment's page, then Run -> Custom run: the form of a new run's parameters."""
    await page.goto(f"{ui_url}/deployments/deployment/{deployment_id}")
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.get_by_text("Custom run", exact=True).click()
    await playwright.expect(page).to_have_url(re.compile(rf"/deployments/deployment/{deployment_id}/run"))
    await playwright.expect(page.locator(".schema-form-property").first).to_be_visible(timeout=SHOWN_WITHIN_MS)


async def show_every_group(page: playwright.Page, titles: set[str]) -> None:
    """Choose the model in every "model or None" switch, so the model's fields show (again for nested ones)."""
    for _ in range(10):
        choices = page.locator(".schema-form-property-any-of-input .p-button-group button[aria-selected='false']")
        hidden = [button for button in await choices.all() if (await button.inner_text()).strip() in titles]
        if not hidden:
            return
        for button in hidden:
            await button.click()


async def form_problems(page: playwright.Page, schema: dict) -> list[str]:
    """What the form fails to show, once every group is opened. The UI draws a chosen group's fields a moment after
    the click (seen in CI: the optional group's fields were not there yet), so this looks again until nothing is
    missing or ``SHOWN_WITHIN_MS`` has passed, and returns what was still missing then."""
    deadline = asyncio.get_running_loop().time() + SHOWN_WITHIN_MS / 1000
    while True:
        await show_every_group(page, group_titles(schema))
        problems = missing(schema, shown_fields(await page.evaluate(SHOWN_FIELDS_JS, OPTIONAL)))
        if not problems or asyncio.get_running_loop().time() > deadline:
            return problems
        await page.wait_for_timeout(250)


async def test_the_deployment_form_describes_every_parameter(prefect_server, tmp_path: Path) -> None:
    deployment_ids = {}
    async with get_client() as client:
        for swap_flow in FORM_FLOWS:
            deployment_id = await (await swap_flow.to_deployment(name=f"form-{swap_flow.name}")).apply()
            stored = (await client.read_deployment(deployment_id)).parameter_openapi_schema
            schema = parameter_schema(swap_flow).model_dump_for_openapi()
            assert stored["properties"] == schema["properties"]  # the form is built from what the server holds
            assert stored.get("definitions", {}) == schema.get("definitions", {})
            deployment_ids[swap_flow.name] = deployment_id
    shots = screenshot_folder(tmp_path)
    page_errors: list[str] = []
    problems: dict[str, list[str]] = {}

    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            for swap_flow in FORM_FLOWS:
                schema = parameter_schema(swap_flow).model_dump_for_openapi()
                await open_custom_run(page, prefect_server.ui_url, deployment_ids[swap_flow.name])
                problems[swap_flow.name] = await form_problems(page, schema)
                if swap_flow is faceswap:
                    await full_page_screenshot(page, shots / "ui-deployment-form.png")
        finally:
            await browser.close()
    assert problems == {swap_flow.name: [] for swap_flow in FORM_FLOWS}
    assert not [e for e in page_errors if e not in PREFECT_UI_RACES], f"the UI raised errors: {page_errors}"


async def full_page_screenshot(page: playwright.Page, path: Path) -> None:
    """The whole form: the UI scrolls inside its own layout, so the window grows to the content's height first."""
    height = await page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    await page.set_viewport_size({**VIEWPORT, "height": min(int(height) + 40, 16_000)})
    await page.wait_for_timeout(300)
    await page.screenshot(path=str(path), full_page=True)
    await page.set_viewport_size(VIEWPORT)
