"""The batch flow and the modules it is made of: ``plan`` (what runs, what is already stored), ``rows`` and
``sources`` (the manifest and where inputs come from), ``items`` and ``groups`` (running them), ``names`` (result
keys and the index), ``earlier`` (work sent before), ``report`` and ``progress``.

``faceswap_flows.flows.batch:batch_faceswap``, the entrypoint of prefect.yaml and of deployments made before the
batch became a package, still names the flow."""

from faceswap_flows.flows.batch.flow import BatchPlan, BatchReport, ItemOutcome, batch_faceswap, swap_items

__all__ = ["BatchPlan", "BatchReport", "ItemOutcome", "batch_faceswap", "swap_items"]
