"""Fetchers for fleetcore: how a device brings its role from the fleet repo.

Three plugins, each its own entry point (and so listed and disabled on its
own, see ``fleetcore plugins``):

- ``git`` (:mod:`fleetcore_git.git`): the default. Shallow fetches into a
  local git cache; the manifest comes from git's own tree.
- ``git-archive`` (:mod:`fleetcore_git.remote_archive`): ``git archive
  --remote`` per release, no local history, for devices with tiny storage.
- ``http-tarball`` (:mod:`fleetcore_git.tarball`): forge tarball URLs over
  HTTP(S), resumable, no git history on the device.
"""
