"""``faceswap-flows doctor``: a deployment checked as it will run, before anything is spent. Each check is one row
(check, result, fix): the Prefect API and its event stream, each block, the storage and the URL the service fetches,
the receiver behind ``public_url`` (a challenge only the holder of the block's secret can answer), the reachability
rules, the signing certificate and its time-stamp authority, the API's rate limit; and, when asked, one paid swap.

Example:
    ```python
    report = asyncio.run(run_doctor(DoctorBlocks()))
    print(report.ok, [(row.check, row.status) for row in report.rows])
    ```
"""

from faceswap_flows.flows.doctor.report import Check, DoctorBlocks, DoctorReport
from faceswap_flows.flows.doctor.run import run_doctor

__all__ = ["Check", "DoctorBlocks", "DoctorReport", "run_doctor"]
