"""For checks that verify SSH signatures (git's ``gpg.format = ssh``):
``verify`` (``ssh-keygen -Y find-principals`` then ``-Y verify``) and
``sign``. See :mod:`fleetcore.sshsig`."""

from fleetcore.sshsig import sign, verify

__all__ = ["sign", "verify"]
