"""A fleet simulator: many virtual devices in one process, speaking the real
device protocol to a real control server.

Each virtual device enrolls, asks for its desired state (with its ETag),
reports status with the seed's fields, sends update history, wakes on server
events, double-checks rollout eligibility with the same strategy plugin as a
real agent, and "applies" a release by waiting instead of touching files.
Everything about the fleet (ids, roles, segments, labels, failures) is a pure
function of the options and the seed, so a run can be repeated.

- :mod:`fleetcore.simulate.plan`: the options, parsed and checked, and the
  devices they describe;
- :mod:`fleetcore.simulate.wire`: a lean HTTP/1.1 client on asyncio
  (keep-alive connection pool, server-sent event streams);
- :mod:`fleetcore.simulate.device`: one virtual device's life;
- :mod:`fleetcore.simulate.run`: the run itself, its counters and its summary.
"""
