"""An offline server that speaks the aifaceswap API and really detects and swaps faces (classical CV, CPU).

>>> from aifaceswap.sandbox import SandboxConfig, SandboxServer
>>> with SandboxServer(SandboxConfig(keys={"demo-key": 100})) as server:   # doctest: +SKIP
...     print(server.url)
"""

from faceswap_flows.aifaceswap.extras import require_extras

require_extras("the sandbox (faceswap_flows.aifaceswap.sandbox)", "sandbox")

from faceswap_flows.aifaceswap.sandbox.config import FaultConfig, SandboxConfig  # noqa: E402
from faceswap_flows.aifaceswap.sandbox.server import SandboxServer, serve_forever  # noqa: E402

__all__ = ["FaultConfig", "SandboxConfig", "SandboxServer", "serve_forever"]
