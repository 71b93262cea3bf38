"""Where the blocks are documented: the README's "Configure the blocks" section, as the package index shows it."""

DOCUMENTATION_URL = "https://pypi.org/project/faceswap-flows/#configure-the-blocks"
