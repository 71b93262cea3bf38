"""The store-results flow (``flow``) and the modules it is made of: ``jobs`` (finding the finished jobs), ``chunks``
(storing them, a task run per chunk), ``mark`` (the span earlier runs swept) and ``failures`` (the jobs the service
failed).

``faceswap_flows.flows.sweep:store_results``, the entrypoint of prefect.yaml and of deployments made before the
sweep became a package, still names the flow."""

from faceswap_flows.flows.sweep.flow import ResultsNotStored, StoreResultsReport, store_results

__all__ = ["ResultsNotStored", "StoreResultsReport", "store_results"]
