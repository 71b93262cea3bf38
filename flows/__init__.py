"""The Prefect flows and tasks of faceswap-flows (installed as ``faceswap_flows.flows``)."""
