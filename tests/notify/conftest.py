"""The alert tests' receivers (tests/notify/receivers.py) as fixtures of this folder."""

from tests.notify.receivers import smtp_receiver, webhook_receiver  # noqa: F401
