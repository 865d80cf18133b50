"""What a plugin's options class (``config_type``) may use.

Options are frozen, ``kw_only`` attrs classes. fleetcore structures the
plugin's TOML table into them with cattrs, so a misspelt key is an error
with its path. Wrap attrs validators in :func:`checked` so their errors keep
that path too (``percent must be between 1 and 100, got 0 @
roles.web.rollout.percent``)::

    from attrs import field, frozen
    from fleetcore.plugin.options import Duration, between, checked

    @frozen(kw_only=True)
    class PingOptions:
        url: str
        timeout: Duration = Duration(5)
        retries: int = field(default=3, validator=checked(between(0, 10)))

``Duration`` and ``Size`` read the units users write (``"30s"``, ``"5m"``,
``"512M"``); :func:`structure` is how the core turns a table into options,
for a plugin's own tests.
"""

from fleetcore.config.convert import (
    UserValueError,
    Validator,
    between,
    checked,
    not_empty,
    one_of,
    structure,
)
from fleetcore.config.units import Duration, Size
from fleetcore.model import SEGMENTS

__all__ = [
    "SEGMENTS",
    "Duration",
    "Size",
    "UserValueError",
    "Validator",
    "between",
    "checked",
    "not_empty",
    "one_of",
    "structure",
]
