"""``fleetcore lint``: every problem in a fleet repository, before devices see it.

``interface.py`` is the plugin author's contract; ``runner.py`` runs the
installed linters; ``sarif.py`` writes their findings for code hosts;
``ci.py`` writes CI workflows that run it.
"""
