"""The production topology of docker-compose.yaml without Docker, on 127.0.0.1 with free ports.

`python -m devstack up|down|status` for people; `Stack.start(state_dir)` for tests.
"""

from devstack.processes import StackError
from devstack.stack import Stack

__all__ = ["Stack", "StackError"]
