"""The standalone daemon: a local socket any process can feed, and its Python producer.

``literal-agent run`` serves the wire protocol (see ``docs/daemon-protocol.md``) on a Unix
socket and feeds the pipeline; :class:`DaemonSink` is the producer side for Python
processes (``LiteralClient(sink=DaemonSink())``); :class:`DaemonClient` a blocking
connection for control requests.
"""

from agent.daemon._transport import DaemonClient, DaemonSink

__all__ = ["DaemonClient", "DaemonSink"]
