"""``make demo``: the control plane, the node agent and the operator running the iris loop."""
