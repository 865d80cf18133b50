"""fleetcore-docker: devices whose role is a docker-compose file.

This package is the ``compose`` plugin of fleetcore. It registers

- the **activator** ``compose``, chosen for every release that has a
  ``compose.yaml``, ``compose.yml``, ``docker-compose.yaml`` or
  ``docker-compose.yml`` (unless the role names another activator): starting
  a release is ``compose up -d --remove-orphans`` under the role's project
  name, stopping it ``compose down``;
- the **validate check** ``compose-config``: Compose must accept the compose
  file (``compose config -q``) before the release is started;
- the **health check** ``containers``: every service runs, is healthy if it
  has a healthcheck, and is not restarting.

Both Compose v2 (``docker compose``, 2.x) and v1 (``docker-compose``, 1.25 or
later) work, and the tests run against both; see :mod:`fleetcore_docker.compose`.
Containers are observed with the Docker SDK (:mod:`fleetcore_docker.observe`),
which other plugins may reuse.
"""
