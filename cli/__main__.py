"""``python -m faceswap_flows.cli``: the faceswap-flows command."""

from faceswap_flows.cli.main import main

if __name__ == "__main__":
    main()
