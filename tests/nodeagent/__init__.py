"""A node agent for tests and the demo: the kubelet, scheduler and provisioner of one node.

It runs the pods a real control plane schedules as local processes in their own network
and mount namespaces (it needs root). It is a harness, not part of mlkube's images:
``NodeAgent.start(AgentSettings(...))`` in tests, ``python -m nodeagent run`` for people.
"""

from nodeagent.agent import AgentSettings, NodeAgent

__all__ = ["AgentSettings", "NodeAgent"]
