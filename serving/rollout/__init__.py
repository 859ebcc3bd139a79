"""Progressive rollout inside the server: canary routing and shadow comparison (issue 21).

A model under rollout has TF Serving's ``stable`` and ``canary`` version labels. Its
:class:`RolloutSettings` (set at run time through the admin route, :mod:`.admin`) say what share of
*unpinned* requests (no version, no label) the ``canary`` version answers, and what share of the
ones ``stable`` answered are also run on ``canary`` off the caller's path and compared with the
candidate's export tolerances. Pinned and labelled requests never pass through here.

* :mod:`.policy`     the settings table and the routing decision for an unpinned request;
* :mod:`.window`     what one replica saw since the settings last changed (counts, latencies, pairs);
* :mod:`.shadow`     runs sampled requests on the candidate, never queued ahead of real requests;
* :mod:`.controller` the three together, behind the data plane's two hooks (route, observe);
* :mod:`.admin`      the JSON admin protocol both transports expose.
"""

from .controller import RolloutController, ServedCall
from .policy import RolloutSettings

__all__ = ["RolloutController", "RolloutSettings", "ServedCall"]
