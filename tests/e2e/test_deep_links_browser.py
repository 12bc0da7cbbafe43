"""Real browser: every page opens from its own URL (the default page used to be reachable only at /)."""
import pytest

from tests.e2e.conftest import open_page


@pytest.mark.parametrize("path,title", [("explorer", "Activation explorer"), ("monitor", "Training monitor"),
                                        ("compare", "Compare runs"), ("benchmark", "Activation benchmark"),
                                        ("", "Activation explorer")])
def test_deep_link_opens_its_page(page, app_url, path, title):
    open_page(page, app_url, path)
    page.locator("h1", has_text=title).first.wait_for()
    assert page.get_by_text("Page not found").count() == 0
    assert page.url.rstrip("/").endswith(path or "explorer")
