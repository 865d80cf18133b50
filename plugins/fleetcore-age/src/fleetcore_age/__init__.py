"""age-encrypted secrets for fleetcore.

- :mod:`fleetcore_age.plugin`: the ``age`` secrets provider (entry point ``age``).
- :mod:`fleetcore_age.keys`: identities, recipients, encrypt and decrypt.
- :mod:`fleetcore_age.repo`: the fleet repo's key layout, ``encrypt`` and ``rekey``.

Importing this package is cheap: ``pyrage`` is imported only when a key is
used.
"""

from fleetcore.errors import FleetcoreError


class AgeError(FleetcoreError):
    """A secret could not be decrypted or encrypted. The message names the
    file and the reason, never the content."""


class IdentityError(AgeError):
    """The device's (or operator's) identity file is missing or unreadable."""


class RecipientError(AgeError):
    """A ``.pub`` recipient file is not a recipient age understands."""


class NotForThisDevice(AgeError):
    """The file was encrypted to other keys than this device's."""


class CorruptFile(AgeError):
    """The file is not a valid age file (truncated, altered, not age)."""


__all__ = ["AgeError", "CorruptFile", "IdentityError", "NotForThisDevice", "RecipientError"]
